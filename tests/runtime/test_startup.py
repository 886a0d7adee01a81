"""The start in timed phases (comfy_stack.startup): serve's own, and ComfyUI's read off its
log through the real log prefixer (/readyz's part: tests/auth_proxy/test_readyz_start.py)."""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
import urllib.error
import urllib.request

from comfy_stack import startup
from comfy_stack.files import write_json
from tests.support import REPO

# ComfyUI's start as the pinned commit logs it (main.py, nodes.py, server.py), abridged.
COMFYUI_LOG = """\
[START] Security scan
** Python version: 3.12.3 (main, Nov  6 2025, 13:44:16) [GCC 13.3.0]
Prestartup times for custom nodes:
   0.0 seconds: /opt/ComfyUI/custom_nodes/comfyui-stack-session
   1.2 seconds: /opt/ComfyUI/custom_nodes/ComfyUI-Manager

Checkpoint files will always be loaded safely.
Total VRAM 31843 MB, total RAM 31843 MB
pytorch version: 2.8.0+cu128
Python version: 3.12.3 (main, Nov  6 2025, 13:44:16) [GCC 13.3.0]
ComfyUI version: 0.3.60
[Prompt Server] web root: /opt/venv/lib/python3.12/site-packages/comfyui_frontend_package/static

Import times for custom nodes:
   0.0 seconds: /opt/ComfyUI/custom_nodes/websocket_image_save.py
   0.1 seconds: /opt/ComfyUI/custom_nodes/ComfyUI-VideoHelperSuite
   0.4 seconds: /opt/ComfyUI/custom_nodes/ComfyUI-KJNodes
   0.2 seconds (IMPORT FAILED): /opt/ComfyUI/custom_nodes/broken-pack
   2.5 seconds: /opt/ComfyUI/custom_nodes/ComfyUI-Hunyuan3d-2-1

Starting server

To see the GUI go to: http://127.0.0.1:8189
"""


def feed(watcher: startup.ComfyUIWatcher, text: str, t0: float, step: float = 1.0) -> None:
    for i, line in enumerate(text.splitlines()):
        watcher.feed(line, now=t0 + (i + 1) * step)


def test_comfyuis_log_becomes_phases_and_each_packs_import_time(tmp_path):
    path = tmp_path / startup.COMFYUI_FILE
    w = startup.ComfyUIWatcher(path, now=1000.0)
    assert startup.read(path).running().name == "prestartup scripts"
    feed(w, COMFYUI_LOG, 1000.0)
    t = startup.read(path)
    assert t is not None and t.done and t.running() is None
    assert [(p.name, p.seconds) for p in t.phases] == [
        ("prestartup scripts", 3.0),  # line 3 (not line 2: Manager's "** Python version")
        ("importing torch and ComfyUI", 7.0),  # line 10
        ("loading nodes and custom node packs", 4.0),  # line 14
        ("starting the server", 9.0),  # line 23, the last
    ]
    assert t.packs == {
        "websocket_image_save.py": 0.0,
        "ComfyUI-VideoHelperSuite": 0.1,
        "ComfyUI-KJNodes": 0.4,
        "broken-pack": 0.2,
        "ComfyUI-Hunyuan3d-2-1": 2.5,
    }
    assert t.failed_packs == ["broken-pack"]
    # nothing after the start changes it (a later "Starting server" in a log, say)
    w.feed("Prestartup times for custom nodes:", now=5000.0)
    assert startup.read(path) == t


def test_a_start_without_prestartup_scripts_names_its_first_phase_by_what_ended_it(tmp_path):
    w = startup.ComfyUIWatcher(tmp_path / "c.json", now=0.0)
    without = COMFYUI_LOG.split("\n\n", 1)[1]
    feed(w, without, 0.0)
    names = [p.name for p in w.timeline.phases]
    assert names == [
        "importing torch and ComfyUI",
        "loading nodes and custom node packs",
        "starting the server",
    ]
    assert w.timeline.phases[0].started_at == 0.0


def test_what_the_start_waits_for_is_the_running_phase():
    serve = startup.Timeline([startup.Phase("settings", time.time() - 3, 0.1)], done=True)
    comfyui = startup.Timeline(
        [
            startup.Phase("importing torch and ComfyUI", time.time() - 9, 2.0),
            startup.Phase("loading nodes and custom node packs", time.time() - 7),
        ]
    )
    said = startup.waiting_for(serve, comfyui)
    assert said.startswith("ComfyUI: loading nodes and custom node packs (") and "s so far" in said
    assert startup.waiting_for(serve, startup.Timeline(done=True)) is None


def test_a_file_that_is_not_a_timeline_reads_as_none(tmp_path):
    for content in ("", "[]", '{"phases": [{"name": 1}]}', "{"):
        (tmp_path / "t.json").write_text(content)
        assert startup.read(tmp_path / "t.json") is None
    assert startup.read(tmp_path / "missing.json") is None


def test_the_log_prefixer_times_comfyuis_start_and_passes_every_line_on(tmp_path):
    timeline = tmp_path / startup.COMFYUI_FILE
    script = f"import sys; sys.stdout.write({COMFYUI_LOG!r})"
    out = subprocess.run(
        [sys.executable, "-m", "comfyctl.logprefix", "comfyui", "--timeline", str(timeline), "--"]
        + [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert all(line.startswith("[comfyui] ") for line in lines)
    relayed = [line.removeprefix("[comfyui] ") for line in lines if "ComfyUI answers after" not in line]
    assert relayed == COMFYUI_LOG.splitlines()
    summary = [line for line in lines if "ComfyUI answers after" in line]
    assert len(summary) == 1 and "slowest packs: ComfyUI-Hunyuan3d-2-1 2.5 s" in summary[0]
    t = startup.read(timeline)
    assert t.done and t.packs["ComfyUI-KJNodes"] == 0.4


def test_serve_records_its_phases_and_forgets_the_last_starts_comfyui_timings(tmp_path, checkout, caplog):
    from comfyctl import config, serve

    run = tmp_path / "data" / "run"
    run.mkdir(parents=True)
    (run / startup.COMFYUI_FILE).write_text(json.dumps({"phases": [], "done": True}))
    s = config.load(
        argparse.Namespace(),
        {
            "COMFYUI_DIR": str(checkout),
            "COMFY_DATA_DIR": str(tmp_path / "data"),
            "COMFYUI_MODE": "cpu",
            "MANAGER_NETWORK_MODE": "offline",
        },
    )
    with caplog.at_level(logging.INFO):
        serve.prepare(s)
    t = startup.read(run / startup.SERVE_FILE)
    names = [p.name for p in t.phases]
    assert names[0] == "data folders" and "bundled workflows" in names
    assert names[-1] == "supervisord's configuration"
    assert t.done and all(p.seconds is not None for p in t.phases)
    assert "start: bundled workflows took" in caplog.text
    assert not (run / startup.COMFYUI_FILE).exists()
    assert f"--timeline {run / startup.COMFYUI_FILE}" in (run / "supervisord.conf").read_text()


def test_numbas_cache_from_the_image_is_copied_once_and_replaced_whole_by_another_images(tmp_path):
    from comfyctl import numba_cache

    image = tmp_path / "image-cache"
    (image / "pymatting_abc").mkdir(parents=True)
    (image / "pymatting_abc" / "f.nbi").write_bytes(b"index")
    (image / "pymatting_abc" / "f.1.nbc").write_bytes(b"code")
    image.chmod(0o555)  # read-only, as the image's is to uid 1000
    dest = tmp_path / "run" / "numba-cache"
    try:
        assert numba_cache.seed(image, dest) == 2
        assert (dest / "pymatting_abc" / "f.1.nbc").read_bytes() == b"code"
        (dest / "pymatting_abc" / "g.1.nbc").write_bytes(b"compiled later")
        assert numba_cache.seed(image, dest) == 0, "the same image's cache is not copied again"
        assert (dest / "pymatting_abc" / "g.1.nbc").exists(), "what numba added since is kept"
        image.chmod(0o755)
        (image / "pymatting_abc" / "f.1.nbc").write_bytes(b"new code")
        assert numba_cache.seed(image, dest) == 2
        assert (dest / "pymatting_abc" / "f.1.nbc").read_bytes() == b"new code"
        assert not (dest / "pymatting_abc" / "g.1.nbc").exists(), "no mix of two images' caches"
    finally:
        image.chmod(0o755)


def test_comfyui_gets_the_seeded_cache_and_serve_copies_it(tmp_path, checkout):
    from comfyctl import config, serve

    image = tmp_path / "image-cache"
    image.mkdir()
    (image / "x.nbi").write_bytes(b"i")
    env = {
        "COMFYUI_DIR": str(checkout),
        "COMFY_DATA_DIR": str(tmp_path / "d"),
        "COMFYUI_MODE": "cpu",
        "MANAGER_NETWORK_MODE": "offline",
    }
    s = config.load(argparse.Namespace(), env | {"COMFY_NUMBA_CACHE": str(image)})
    _, text = serve.prepare(s)
    comfy = text.split("[program:auth_proxy]")[0]
    assert f'NUMBA_CACHE_DIR="{tmp_path / "d" / "run" / "numba-cache"}"' in comfy
    assert (tmp_path / "d" / "run" / "numba-cache" / "x.nbi").exists()
    assert "numba's cache from the image" in [
        p.name for p in startup.read(s.run_dir / startup.SERVE_FILE).phases
    ]
    plain = config.load(argparse.Namespace(), env)
    assert "NUMBA_CACHE_DIR" not in serve.prepare(plain)[1], "without the image's cache numba keeps its own"


def test_a_blocking_sync_has_the_gate_up_saying_what_it_waits_for(tmp_path, checkout, monkeypatch):
    """MODEL_SYNC_MODE=block: while the sync runs, the real proxy answers on the port: /readyz
    503 with the sync's progress in words, /healthz 200; it is gone before supervisord."""
    from comfyctl import config, serve, sync_job
    from model_sync import progress as sync_progress
    from tests.support import free_port, http_status, python_env, wait_until

    port = free_port()
    manifest = tmp_path / "models.yaml"
    manifest.write_text("version: 1\nfiles: []\n")
    env = python_env(
        COMFYUI_DIR=str(checkout),
        COMFY_DATA_DIR=str(tmp_path / "d"),
        COMFYUI_MODE="cpu",
        MODEL_SYNC_MODE="block",
        MODEL_PROFILES="a",
        MODEL_MANIFEST=str(manifest),
        AUTH_PROXY_LISTEN=f"127.0.0.1:{port}",
        COMFYUI_PORT=str(free_port()),
        COMFY_ADMIN_PASSWORD="block-sync-password",
        MANAGER_NETWORK_MODE="offline",
    )
    for k, val in env.items():
        monkeypatch.setenv(k, val)  # the gate is started with this process's environment
    s = config.load(argparse.Namespace(), env)
    base = f"http://127.0.0.1:{port}"
    seen: dict = {}

    def a_sync_the_gate_watches(plan) -> int:
        # the progress file as the sync writes it (model_sync.progress owns its format)
        snapshot = sync_progress.Snapshot("running", 12_400_000_000, 28 * 10**9, 0, 7)
        write_json(sync_progress.path_for(s.models_dir), snapshot.to_json())
        wait_until(lambda: http_status(base + "/healthz") == 200, timeout=60, what="the gate to answer")
        try:
            urllib.request.urlopen(base + "/readyz", timeout=5)  # noqa: S310 (loopback)
        except urllib.error.HTTPError as exc:
            seen["status"], seen["body"] = exc.code, json.load(exc)
        return 0

    monkeypatch.setattr(sync_job, "run_plan", a_sync_the_gate_watches)
    serve.prepare(s)
    assert seen["status"] == 503
    assert seen["body"]["waiting_for"] == "syncing models: 12.4 of 28.0 GB (0 of 7 files)"
    assert seen["body"]["start"][-1]["name"] == "model sync (MODEL_SYNC_MODE=block)"
    wait_until(lambda: _refused(base + "/healthz"), timeout=30, what="the gate to stop before supervisord")


def _refused(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)  # noqa: S310 (loopback)
    except urllib.error.URLError as exc:
        return not isinstance(exc, urllib.error.HTTPError)
    return False


def test_managers_channel_check_overlaps_the_start_and_never_holds_it_past_its_deadline(tmp_path):
    """A lookup that hangs (a resolver that cannot reach out) costs the deadline, not 10 s."""
    import threading

    from comfyctl import manager_config

    release = threading.Event()
    asked: list[str] = []

    def hangs(channel: str) -> bool:
        asked.append(channel)
        release.wait(30)
        return True

    probe = manager_config.Probe(tmp_path, deadline=0.2, check=hangs)
    try:
        assert manager_config.write(tmp_path, "auto", probe=probe) == "offline"
        assert asked == [manager_config.DEFAULT_CHANNEL]
    finally:
        release.set()
    answers = manager_config.Probe(tmp_path, deadline=5, check=lambda _c: True)
    assert manager_config.write(tmp_path, "auto", probe=answers) == "public"


def test_managers_channel_check_costs_the_start_nothing_and_its_answer_is_written_beside_it(tmp_path):
    """`auto` writes config.ini at once with the mode known (offline at the first start, then
    the last start's answer) and leaves the check to a process of its own, which writes
    the answer while ComfyUI starts: public while the channel serves its node list, offline
    once it does not."""
    import configparser
    import http.server
    import threading

    from comfyctl import manager_config
    from tests.support import wait_until

    class Channel(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200 if self.path == "/custom-node-list.json" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Channel)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    path = manager_config.config_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(f"[default]\nchannel_url = http://127.0.0.1:{server.server_address[1]}\n")

    def mode() -> str | None:
        cfg = configparser.ConfigParser()
        cfg.read(path)
        return cfg["default"].get("network_mode")

    try:
        started = time.monotonic()
        assert manager_config.start(tmp_path, "auto") == "offline"  # nothing known yet
        assert time.monotonic() - started < manager_config.PROBE_DEADLINE
        wait_until(lambda: mode() == "public", timeout=30, what="the check's answer in config.ini")
    finally:
        server.shutdown()
        server.server_close()
    assert manager_config.start(tmp_path, "auto") == "public"  # the last start's answer, at once
    wait_until(lambda: mode() == "offline", timeout=30, what="offline once the channel is gone")
    assert manager_config.start(tmp_path, "offline") == "offline" and mode() == "offline"


def test_doctor_shows_the_last_start_phase_by_phase_with_each_packs_import_time(tmp_path):
    from comfyctl import doctor

    assert "none recorded" in doctor.last_start(tmp_path)
    serve = startup.Recorder(tmp_path / startup.SERVE_FILE)
    with serve.phase("bundled workflows"):
        pass
    serve.finish()
    w = startup.ComfyUIWatcher(tmp_path / startup.COMFYUI_FILE, now=0.0)
    feed(w, COMFYUI_LOG.split("Starting server")[0], 0.0)  # still starting the server
    said = doctor.last_start(tmp_path)
    assert said.startswith("serve ") and "bundled workflows" in said
    assert "loading nodes and custom node packs 4.00 s" in said and "starting the server ..." in said
    assert "packs: ComfyUI-Hunyuan3d-2-1 2.5 s, ComfyUI-KJNodes 0.4 s" in said
    assert "IMPORT FAILED: broken-pack" in said and "now waiting for ComfyUI: starting the server" in said


def test_supervisords_socket_is_woken_once_it_listens_not_before(tmp_path):
    """supervisord starts its programs after its first wait on its sockets ends: the start
    connects once to its control socket as soon as supervisord listens there, from a
    process beside it; a stale socket file of an earlier run is not mistaken for it."""
    import socket

    from comfyctl import supervisor

    path = tmp_path / supervisor.SOCKET
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # a socket file nobody listens on
    stale.close()
    supervisor.wake_when_up(tmp_path)
    time.sleep(0.3)
    path.unlink()
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen()
        server.settimeout(20)
        conn, _ = server.accept()
        conn.close()
