"""The CPU image as a user runs it (`docker compose --profile cpu up -d` with a .env), checked
through its published port; `docker compose exec` only where the issue's user would use it
(creating a token) or where only the inside can tell (processes, files, libraries).
The tests run in file order on one stack: restart, then the second start, then shutdown, then
a start in new containers on the same volumes."""

from __future__ import annotations

import http.cookiejar
import json
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from tests.image.conftest import BUCKET, PASSWORD, PREFIX
from tests.support import REPO, wait_until
from tests.support.compose_stack import get

pytestmark = pytest.mark.timeout(3600)
SMOKE_PREFIX = "smoke/smoke"
JSON = {"Accept": "application/json"}


class Browser:
    """A cookie-keeping client, as a browser is to the login proxy."""

    def __init__(self, url: str):
        self.url = url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def request(self, path: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(
            self.url + path, data=data, headers={"Origin": self.url, **(headers or {})}
        )
        try:
            with self.opener.open(req, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def login(self, password: str = PASSWORD) -> int:
        body = urllib.parse.urlencode({"username": "admin", "password": password, "next": "/"}).encode()
        status, _ = self.request("/login", body, {"Content-Type": "application/x-www-form-urlencoded"})
        return status


def token(stack, name: str) -> str:
    out = stack.exec("python", "-m", "auth_proxy", "token", "create", name)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.strip().splitlines()[-1]


def processes(stack) -> list[dict]:
    """Every process in the container: pid, uid and command line, from /proc."""
    return json.loads(
        stack.python(
            "import json, os\n"
            "out = []\n"
            "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
            "    try:\n"
            "        cmd = open(f'/proc/{pid}/cmdline', 'rb').read().replace(b'\\0', b' ').decode().strip()\n"
            "        uid = [l.split()[1] for l in open(f'/proc/{pid}/status') if l.startswith('Uid:')][0]\n"
            "    except OSError:\n"
            "        continue\n"
            "    out.append({'pid': int(pid), 'uid': int(uid), 'cmd': cmd})\n"
            "print(json.dumps(out))\n"
        )
    )


def comfyui_process(stack) -> dict:
    procs = [p for p in processes(stack) if "main.py" in p["cmd"] and "logprefix" not in p["cmd"]]
    assert len(procs) == 1, procs
    return procs[0]


def sync_summaries(logs: str) -> list[dict]:
    return [json.loads(m)["summary"] for m in re.findall(r'(\{"summary": .*\})', logs)]


def test_the_build_ran_on_a_base_with_a_uid_1000_user_and_needed_nothing_of_cuda(engine, inputs, image):
    base = inputs.get("UBUNTU_IMAGE") or "ubuntu:24.04"
    who = engine.run("run", "--rm", "--entrypoint", "getent", base, "passwd", "1000", check=False)
    assert who.returncode == 0 and who.stdout.startswith("ubuntu:"), "the base must have Ubuntu's user 1000"
    # no CUDA base pulled, no CUDA index asked, nothing compiled with nvcc (the legacy builder
    # prints the Dockerfile's global ARG lines, which name the CUDA images: those do not count)
    ran = [line for line in image[1].splitlines() if not line.startswith("Step ")]
    for cuda in ("nvidia/cuda", "whl/cu128", "nvcc", "Building wheel for custom_rasterizer"):
        assert not [line for line in ran if cuda in line], cuda
    listed = engine.run("run", "--rm", "--entrypoint", "pip", image[0], "list", "--format=freeze").stdout
    for cuda_only in ("xformers", "sageattention", "custom_rasterizer"):
        assert cuda_only not in listed, cuda_only


def test_healthy_means_ready_and_the_login_page_answers(stack):
    status, _, _ = get(stack.url + "/readyz")
    assert status == 200
    status, body, _ = get(stack.url + "/login")
    assert status == 200 and b"password" in body.lower()
    status, _, _ = get(stack.url + "/system_stats", JSON)
    assert status == 401


def test_smoke_workflow_from_the_host_with_a_token_lands_on_the_output_volume(stack, tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "comfyctl",
            "run",
            str(REPO / "workflows/api/smoke.json"),
            "--server",
            stack.url,
            "--token",
            token(stack, "tier"),
            "--out",
            str(tmp_path),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    pngs = list(tmp_path.rglob("*.png"))
    assert pngs and pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    listed = stack.exec("find", "/data/output/smoke", "-name", "*.png").stdout.split()
    assert any(p.endswith(pngs[0].name) for p in listed), listed


def test_comfyuis_port_is_not_reachable_from_the_host(stack, engine):
    ip = engine.run(
        "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", stack.container()
    ).stdout.strip()
    for host in ("127.0.0.1", ip):
        with socket.socket() as s:
            s.settimeout(5)
            assert s.connect_ex((host, 8189)) != 0, f"{host}:8189 answers"
    with socket.socket() as s:  # while the proxy's port on the container's address does
        s.settimeout(5)
        assert s.connect_ex((ip, 8188)) == 0


def test_both_programs_run_as_uid_1000(stack):
    procs = processes(stack)
    for needle in ("main.py", "-m auth_proxy", "supervisord"):
        matching = [p for p in procs if needle in p["cmd"]]
        assert matching and all(p["uid"] == 1000 for p in matching), (needle, procs)


def test_the_bundled_workflows_are_in_comfyuis_workflows_folder(stack):
    b = Browser(stack.url)
    assert b.login() in (200, 303)
    status, body = b.request("/api/userdata?dir=workflows", headers=JSON)
    assert status == 200, body
    listed = set(json.loads(body))
    bundled = {p.name for p in (REPO / "workflows/ui").glob("*.json")}
    assert bundled <= listed, bundled - listed


def test_pymeshlab_loads_every_plugin_and_the_build_left_nothing_behind(stack):
    out = stack.exec("python", "-m", "docker.check_image")
    assert out.returncode == 0, out.stdout + out.stderr
    # and directly: a mesh read and written through pymeshlab's I/O plugins
    stack.python(
        "import pymeshlab, tempfile, os\n"
        "d = tempfile.mkdtemp(); p = os.path.join(d, 'a.obj')\n"
        "open(p, 'w').write('v 0 0 0\\nv 1 0 0\\nv 0 1 0\\nf 1 2 3\\n')\n"
        "m = pymeshlab.MeshSet(); m.load_new_mesh(p); m.save_current_mesh(p + '.ply')\n"
        "assert m.current_mesh().vertex_number() == 3\n"
    )
    assert stack.exec("test", "-e", "/opt/ComfyUI/user").returncode != 0


def test_manager_sees_torch_and_an_offline_start_is_quiet(stack):
    proc = comfyui_process(stack)
    # pip list with exactly ComfyUI's environment, as ComfyUI-Manager runs it
    listed = stack.python(
        "import os, subprocess, sys\n"
        f"env = dict(l.split('=', 1) for l in open('/proc/{proc['pid']}/environ').read().split('\\0') if '=' in l)\n"
        "print(subprocess.run([sys.executable, '-m', 'pip', 'list', '--format=freeze'], env=env,\n"
        "                     capture_output=True, text=True).stdout)\n"
    )
    assert re.search(r"^torch==", listed, re.M), listed[:2000]
    logs = stack.logs()
    assert "PyTorch is not installed" not in logs
    assert "'comfyui-frontend-package' dependency were fixed" not in logs  # no reinstall at start
    assert "network_mode: offline" in logs  # the container has no internet here
    assert "Traceback" not in logs, logs[logs.index("Traceback") - 2000 :][:6000]
    assert "Matplotlib is building the font cache" not in logs


def test_the_start_is_timed_every_pack_imported_and_numba_compiled_nothing(stack):
    """The start's phases are in the run folder and /readyz; ComfyUI imported every pinned
    pack (none failed, none skipped); numba found pymatting's functions in the cache the
    image built and compiled nothing (it would have rewritten the cache's index files after
    the start copied them)."""
    import yaml

    run = json.loads(stack.exec("cat", "/data/run/comfyui-start.json").stdout)
    assert run["done"] and not run["failed_packs"], run
    names = [p["name"] for p in run["phases"]]
    assert names == [
        "prestartup scripts",
        "importing torch and ComfyUI",
        "loading nodes and custom node packs",
        "starting the server",
    ], names
    lock = yaml.safe_load((REPO / "custom_nodes/lock.yaml").read_text())
    assert {p["name"] for p in lock["packs"]} <= set(run["packs"]), run["packs"]
    serve = json.loads(stack.exec("cat", "/data/run/start.json").stdout)
    assert serve["done"] and "numba's cache from the image" in [p["name"] for p in serve["phases"]]
    status, body, _ = get(stack.url + "/readyz")
    assert status == 200 and json.loads(body)["comfyui_start"][-1]["name"] == "starting the server"
    newer = stack.exec(
        "find", "/data/run/numba-cache", "-type", "f", "-newer", "/data/run/numba-cache/.seeded-from"
    )
    files = stack.exec("find", "/data/run/numba-cache", "-name", "*.nbi")
    assert newer.returncode == 0 and newer.stdout.strip() == "", f"numba compiled at start: {newer.stdout}"
    assert len(files.stdout.split()) >= 10, files.stdout


def test_numbas_cache_holds_on_another_cpu_model_and_a_read_only_root(engine, image):
    """The cache is keyed for numba's generic CPU, not the build machine's: on a host whose
    CPU is another model (its name and features answered differently here), importing
    pymatting loads every function from the cache and compiles none, with the root
    filesystem read-only; the same host without the generic setting would need other code."""
    script = (
        "import json, os, sys\n"
        "import llvmlite.binding as ll\n"
        "ll.get_host_cpu_name = lambda: 'znver5'  # another CPU model than the build machine's\n"
        "from pathlib import Path\n"
        "from comfyctl.numba_cache import seed\n"
        "seed(Path(os.environ['COMFY_NUMBA_CACHE']), Path('/tmp/numba'))\n"
        "os.environ['NUMBA_CACHE_DIR'] = '/tmp/numba'\n"
        "import numba.core.codegen as cg\n"
        "cg.get_host_cpu_features = lambda: '+avx512f,+avx2,+fma'\n"
        "from numba.core.dispatcher import Dispatcher\n"
        "from numba.core.registry import cpu_target\n"
        "import pymatting\n"
        "hits = misses = 0\n"
        "for name, mod in list(sys.modules.items()):\n"
        "    if name.startswith('pymatting'):\n"
        "        for obj in vars(mod).values():\n"
        "            if isinstance(obj, Dispatcher):\n"
        "                hits += sum(obj.stats.cache_hits.values())\n"
        "                misses += sum(obj.stats.cache_misses.values())\n"
        "print(json.dumps({'hits': hits, 'misses': misses,\n"
        "                  'key': cpu_target.target_context.codegen().magic_tuple()}))\n"
    )
    out = engine.run(
        "run", "--rm", "--read-only", "--tmpfs", "/tmp", "--entrypoint", "python", image[0], "-c", script,
        timeout=300,
    )  # fmt: skip
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["misses"] == 0 and seen["hits"] >= 20, seen
    assert seen["key"][1:] == ["generic", ""], seen
    # without the generic setting the same host asks for code of its own CPU: another key
    other = engine.run(
        "run", "--rm", "--read-only", "--tmpfs", "/tmp", "--entrypoint", "sh", image[0], "-c",
        "unset NUMBA_CPU_NAME; exec python -c \"import llvmlite.binding as ll\n"
        "ll.get_host_cpu_name = lambda: 'znver5'\n"
        "from numba.core.registry import cpu_target\n"
        "print(cpu_target.target_context.codegen().magic_tuple()[1])\"",
        timeout=120,
    )  # fmt: skip
    assert other.stdout.strip().splitlines()[-1] == "znver5", other.stdout + other.stderr


def test_a_model_uploaded_after_the_start_is_in_comfyuis_lists_without_a_restart(stack, bucket):
    """Upload to the bucket, sync while ComfyUI serves (`comfyctl sync` in the container, then
    the admin's POST /_models/sync), and ComfyUI's loader lists the file through the gate."""
    import numpy as np
    from safetensors.numpy import save

    tok = token(stack, "sync-now")
    auth = {"Authorization": f"Bearer {tok}", **JSON}
    pid = comfyui_process(stack)["pid"]

    def loras() -> list[str]:
        status, body, _ = get(stack.url + "/api/object_info/LoraLoader", auth)
        assert status == 200, body[:500]
        return json.loads(body)["LoraLoader"]["input"]["required"]["lora_name"][0]

    for name in ("late_one.safetensors", "late_two.safetensors"):
        assert name not in loras()
        bucket["client"].put_object(
            Bucket=BUCKET, Key=f"{PREFIX}/loras/{name}", Body=save({"w": np.ones(16, dtype=np.float32)})
        )
    out = stack.exec("comfyctl", "sync", timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "late_one.safetensors" in loras() and "late_two.safetensors" in loras()
    bucket["client"].put_object(
        Bucket=BUCKET,
        Key=f"{PREFIX}/loras/late_three.safetensors",
        Body=save({"w": np.zeros(4, dtype=np.float32)}),
    )
    req = urllib.request.Request(stack.url + "/_models/sync", data=b"", headers=auth, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 202
    wait_until(
        lambda: not json.loads(get(stack.url + "/_models/sync", auth)[1])["running"],
        timeout=300,
        what="the sync started through the gate to end",
    )
    assert json.loads(get(stack.url + "/_models/sync", auth)[1])["last_exit"] == 0
    assert "late_three.safetensors" in loras()
    assert comfyui_process(stack)["pid"] == pid, "ComfyUI was not restarted"


def test_no_build_setting_stays_in_the_image(engine, image):
    env = json.loads(engine.run("image", "inspect", "-f", "{{json .Config.Env}}", image[0]).stdout)
    assert not [
        e for e in env if e.startswith(("TORCH_INDEX", "PIP_INDEX_URL", "GIT_MIRROR", "APT_MIRROR"))
    ], env


def test_restart_keeps_password_tokens_and_browser_sessions(stack, engine):
    b = Browser(stack.url)
    assert b.login() in (200, 303)
    assert b.request("/api/system_stats", headers=JSON)[0] == 200
    t = token(stack, "kept")
    stack.run("restart", timeout=300)
    stack.wait_healthy(engine.docker)
    assert b.request("/api/system_stats", headers=JSON)[0] == 200, "the browser session was lost"
    assert get(stack.url + "/api/system_stats", {"Authorization": f"Bearer {t}", **JSON})[0] == 200
    assert Browser(stack.url).login() in (200, 303)
    assert Browser(stack.url).login("wrong-password-1") not in (200, 303)


def test_a_second_start_with_the_models_present_syncs_nothing(stack):
    summaries = sync_summaries(stack.logs())
    assert len(summaries) >= 2, summaries  # the first start and the restart above
    first, last = summaries[0], summaries[-1]
    assert first["fetched"] == 1 and not first["errors"], first
    assert last["fetched"] == 0 and last["bytes_transferred"] == 0 and not last["errors"], last
    assert stack.exec("test", "-s", "/data/models/checkpoints/tier-tiny.safetensors").returncode == 0


def v2(stack, tok: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        stack.url + path,
        data=data,
        headers={"Authorization": f"Bearer {tok}", "Content-Type": "application/json", **JSON},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


kept_job: dict = {}


def test_a_v2_job_succeeds_with_its_output_kept(stack):
    from tests.support.comfyui import SMOKE_PROMPT

    tok = token(stack, "v2")
    status, body = v2(stack, tok, "/api/v2/jobs", {"workflow": SMOKE_PROMPT})
    assert status == 201, body
    job_id = json.loads(body)["id"]
    done = wait_until(
        lambda: (
            (j := json.loads(v2(stack, tok, f"/api/v2/jobs/{job_id}")[1]))["status"]
            in ("succeeded", "failed", "canceled")
            and j
        ),
        timeout=300,
        interval=1,
        what="the v2 job",
    )
    assert done["status"] == "succeeded", done
    [out] = done["outputs"]
    status, png = v2(stack, tok, f"/api/v2/assets/{out['id']}/content")
    assert status == 200 and png[:8] == b"\x89PNG\r\n\x1a\n"
    kept_job.update(token=tok, job=done, png=png)


def test_down_finishes_inside_the_grace_period_and_both_programs_stop_cleanly(stack):
    logs_before = len(stack.logs())
    started = time.monotonic()
    stack.run("--profile", "cpu", "stop", timeout=300)
    took = time.monotonic() - started
    grace = 60  # compose.yaml's stop_grace_period
    assert took < grace, f"stopping took {took:.0f} s"
    tail = stack.logs()[logs_before:]
    assert re.search(r"stopped: auth_proxy \(exit status 0\)", tail), tail[-3000:]
    assert re.search(r"stopped: comfyui \((exit status 0|terminated by SIGTERM)\)", tail), tail[-3000:]
    state = stack.run("ps", "-a", "--format", "json").stdout
    assert '"ExitCode":0' in state.replace(" ", "") or '"ExitCode": 0' in state, state
    stack.run("down", timeout=300)
    wait_until(
        lambda: not stack.run("ps", "-aq").stdout.strip(), timeout=60, what="the containers to be removed"
    )


def test_v2_jobs_and_their_outputs_survive_down_and_up(stack, engine):
    """After `down` (the containers removed, the volumes kept) a new container has every job."""
    assert kept_job, "the v2 job test above did not run"
    stack.run("--profile", "cpu", "up", "-d", timeout=600)
    stack.wait_healthy(engine.docker)
    tok, job = kept_job["token"], kept_job["job"]
    status, body = v2(stack, tok, f"/api/v2/jobs/{job['id']}")
    assert status == 200, body
    assert json.loads(body)["status"] == "succeeded"
    [out] = job["outputs"]
    assert v2(stack, tok, f"/api/v2/assets/{out['id']}/content") == (200, kept_job["png"])
