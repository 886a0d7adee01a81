"""`make serve` on a box without Docker and without a ComfyUI checkout: `comfyctl serve`
with COMFYUI_DIR unset fetches the pinned ComfyUI and packs by the image's mechanism (here
from the source tarballs beside the checkout where they are, else from git) into the data
folder, makes its venv from docker/image-lock.txt, serves, and runs the smoke workflow
through the proxy; a second start reuses what the first made."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.image.conftest import PASSWORD, timings
from tests.support import REPO, free_port, need, start_serve, stop_process
from tests.support.compose_stack import get
from tests.support.docker_engine import reachable

pytestmark = pytest.mark.timeout(5400)


def base_python() -> str | None:
    """A Python 3.12 that runs (a pyenv shim for a version not selected does not)."""
    for exe in (os.environ.get("COMFY_BASE_PYTHON"), shutil.which("python3.12")):
        if exe and subprocess.run([exe, "-c", ""], capture_output=True).returncode == 0:
            return exe
    return None


def wait_ready(proc: subprocess.Popen, url: str, log_path, timeout: float = 3600) -> None:
    """Until serve's proxy says ready; at once when serve exits (wait_until would keep waiting)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}:\n{log_path.read_text()[-6000:]}")
        try:
            if get(url + "/readyz")[0] == 200:
                return
        except OSError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise TimeoutError(f"serve was not ready after {timeout:.0f} s")
        time.sleep(2)


def serve(data, port: int, log) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMFYUI_", "AUTH_PROXY_", "PYTHON"))}
    env |= {
        "AUTH_PROXY_LISTEN": f"127.0.0.1:{port}",
        "COMFYUI_PORT": str(free_port()),
        "COMFYUI_MODE": "cpu",
        "MODEL_SYNC_MODE": "off",
        "COMFY_ADMIN_PASSWORD": PASSWORD,
        "COMFY_BASE_PYTHON": base_python(),
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
    }
    sources = REPO.parent / "shared" / "sources"
    if sources.is_dir():
        env["SOURCES_DIR"] = str(sources)
    if not reachable("https://download.pytorch.org/whl/cpu/"):
        env["TORCH_INDEX_URL"] = "https://pypi.org/simple"
    return start_serve(data, env, log)


def test_serve_without_a_checkout_makes_comfyui_in_the_data_folder_and_runs_the_smoke_workflow(tmp_path):
    need(
        base_python() is not None,
        "no Python 3.12 (python3.12 on PATH or COMFY_BASE_PYTHON) for ComfyUI's venv",
    )
    data, port = tmp_path / "data", free_port()
    url = f"http://127.0.0.1:{port}"
    for attempt in ("first", "second"):
        started = time.monotonic()
        with open(tmp_path / f"serve-{attempt}.log", "wb") as log:
            proc = serve(data, port, log)
            try:
                wait_ready(proc, url, tmp_path / f"serve-{attempt}.log")
                timings[f"make serve without a checkout, {attempt} start seconds"] = round(
                    time.monotonic() - started
                )
                tok = subprocess.run(
                    [sys.executable, "-m", "auth_proxy", "token", "create", attempt],
                    # the server's own settings: its state and its ledger's database, where accounts are
                    env=os.environ
                    | {"AUTH_PROXY_STATE_DIR": str(data / "auth"), "COMFY_JOBS_DIR": str(data / "jobs")},
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert tok.returncode == 0, tok.stderr
                out = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "comfyctl",
                        "run",
                        str(REPO / "workflows/api/smoke.json"),
                        "--server",
                        url,
                        "--token",
                        tok.stdout.split()[-1],
                        "--out",
                        str(tmp_path / attempt),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                assert out.returncode == 0, out.stdout + out.stderr
                assert list((tmp_path / attempt).rglob("*.png"))
            except (TimeoutError, AssertionError):
                print((tmp_path / f"serve-{attempt}.log").read_text()[-8000:])
                raise
            finally:
                stop_process(proc, 60, group=True)
    first = (tmp_path / "serve-first.log").read_text()
    second = (tmp_path / "serve-second.log").read_text()
    assert "fetching the pinned ComfyUI" in first and "ComfyUI-Manager @ 908a1009d25a" in first
    assert "using ComfyUI and its venv" in second and "fetching the pinned ComfyUI" not in second
    assert (data / "comfyui/ComfyUI/custom_nodes/ComfyUI-KJNodes").is_dir()
