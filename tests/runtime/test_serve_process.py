"""`comfyctl serve` as a process: supervisord runs the real proxy in front of a ComfyUI
stand-in (a checkout whose main.py serves ComfyUI's routes), restarts what dies, and
stops everything on SIGTERM."""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import urllib.error
import urllib.request

import pytest

from tests.support import free_port, http_status, python_env, start_serve, stop_process, wait_until

# Run as ComfyUI's main.py by supervisord, which passes on the PYTHONPATH (this checkout)
# that python_env gives comfyctl serve.
MAIN_PY = """import os
open(os.path.join({data!r}, "fake.pid"), "w").write(str(os.getpid()))
from tests.support.fake_comfyui import main
main()
"""


@pytest.fixture
def served(tmp_path):
    comfy = tmp_path / "ComfyUI"
    comfy.mkdir()
    data = tmp_path / "data"
    data.mkdir()
    (comfy / "main.py").write_text(MAIN_PY.format(data=str(data)))
    port, comfy_port = free_port(), free_port()
    env = python_env(
        COMFYUI_DIR=str(comfy),
        COMFYUI_PYTHON=sys.executable,
        MODEL_SYNC_MODE="off",
        AUTH_PROXY_LISTEN=f"127.0.0.1:{port}",
        COMFYUI_PORT=str(comfy_port),
        COMFY_ADMIN_PASSWORD="serve-test-password",
        COMFYUI_MODE="cpu",
        PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
    )
    env.pop("AUTH_PROXY_STATE_DIR", None)
    log = open(tmp_path / "serve.log", "wb")
    proc = start_serve(data, env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: http_status(base + "/readyz") == 200,
            timeout=60,
            interval=0.2,
            what="the stack to be ready",
        )
        yield proc, base, data, tmp_path / "serve.log"
    finally:
        stop_process(proc, 30, group=True)
        log.close()


def test_upstream_killed_is_restarted_and_readiness_follows(served):
    proc, base, data, log = served
    first = int((data / "fake.pid").read_text())
    os.kill(first, signal.SIGKILL)
    wait_until(
        lambda: http_status(base + "/readyz") == 503, timeout=20, interval=0.02, what="/readyz to say 503"
    )
    wait_until(
        lambda: http_status(base + "/readyz") == 200, timeout=60, interval=0.2, what="ComfyUI to come back"
    )
    second = int((data / "fake.pid").read_text())
    assert second != first
    # the proxy still guards the restarted ComfyUI
    assert http_status(base + "/queue") == 401
    text = log.read_text()
    assert "[comfyui]" in text and "[auth_proxy]" in text, "both programs log with a prefix"


def test_sigterm_stops_both_cleanly(served):
    proc, base, data, _log = served
    fake = int((data / "fake.pid").read_text())
    os.kill(proc.pid, signal.SIGTERM)  # serve exec'd into supervisord: same pid
    assert proc.wait(40) == 0
    wait_until(
        lambda: not os.path.exists(f"/proc/{fake}") or "Z" in open(f"/proc/{fake}/stat").read().split()[2],
        timeout=10,
        what="ComfyUI to exit",
    )
    with pytest.raises(OSError):
        urllib.request.urlopen(base + "/healthz", timeout=2)


def test_files_serve_writes(served):
    _proc, _base, data, _log = served
    paths = (data / "run" / "extra_model_paths.yaml").read_text()
    assert str(data / "models") in paths
    for sub in ("models", "input", "output", "user", "auth"):
        assert (data / sub).is_dir()
    with sqlite3.connect(next(data.rglob("ledger.db"))) as db:
        assert db.execute("SELECT role, must_change FROM accounts WHERE name = 'admin'").fetchall() == [
            ("admin", 0)
        ]
