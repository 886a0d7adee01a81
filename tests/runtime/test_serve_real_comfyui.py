"""Opt-in tier: `comfyctl serve` with a real ComfyUI on CPU (COMFYUI_DIR, COMFYUI_PYTHON)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from comfy_stack import startup
from tests.support import (
    REPO,
    comfyui_paths,
    free_port,
    http_status,
    python_env,
    start_serve,
    stop_process,
    wait_until,
)
from tests.support.comfyui import SMOKE_PROMPT

pytestmark = pytest.mark.comfyui
PASSWORD = "real-serve-password"


PROBE_NODE = """
import folder_paths


class StackProbe:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"first": ("STRING", {"default": folder_paths.get_folder_paths("custom_nodes")[0]})}}

    RETURN_TYPES = ()
    FUNCTION = "run"
    CATEGORY = "tests"


NODE_CLASS_MAPPINGS = {"StackProbe": StackProbe}
"""


def comfyui_pid(port: int) -> int:
    out = subprocess.run(
        ["pgrep", "-f", f"main.py --listen 127.0.0.1 --port {port} "], capture_output=True, text=True
    )
    pids = [int(p) for p in out.stdout.split()]
    # the prefixer's command line contains the same words; the ComfyUI process is its child
    return max(pids)


def test_serve_runs_the_smoke_workflow_and_restarts_comfyui(tmp_path):
    comfy_dir, comfy_python = comfyui_paths()
    data = tmp_path / "data"
    port, comfy_port = free_port(), free_port()
    env = python_env(
        COMFYUI_DIR=str(comfy_dir),
        COMFYUI_PYTHON=str(comfy_python),
        MODEL_SYNC_MODE="off",
        AUTH_PROXY_LISTEN=f"127.0.0.1:{port}",
        COMFYUI_PORT=str(comfy_port),
        COMFYUI_MODE="cpu",
        COMFY_ADMIN_PASSWORD=PASSWORD,
        PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
    )
    base = f"http://127.0.0.1:{port}"
    # A node installed the way ComfyUI-Manager installs one: into the first custom_nodes
    # folder, which must be the data volume's. It reports that folder in its schema.
    (data / "custom_nodes").mkdir(parents=True)
    (data / "custom_nodes" / "probe_node.py").write_text(PROBE_NODE)
    started = time.monotonic()
    proc = start_serve(data, env, open(tmp_path / "serve.log", "wb"))
    try:
        wait_until(lambda: http_status(base + "/healthz") == 200, timeout=60, interval=0.05, what="the proxy")
        proxy_up = time.monotonic() - started
        wait_until(
            lambda: http_status(base + "/readyz") == 200,
            timeout=180,
            interval=0.1,
            what="ComfyUI behind the proxy",
        )
        ready = time.monotonic() - started
        print(f"\nserve -> proxy /healthz {proxy_up:.2f}s, -> /readyz 200 {ready:.2f}s")
        token = subprocess.run(
            [sys.executable, "-m", "auth_proxy", "token", "create", "optin"],
            cwd=REPO,
            env={**env, "AUTH_PROXY_STATE_DIR": str(data / "auth"), "COMFY_JOBS_DIR": str(data / "jobs")},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[-1]
        req = urllib.request.Request(
            base + "/api/prompt",
            data=json.dumps({"prompt": SMOKE_PROMPT}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        pid = json.load(urllib.request.urlopen(req, timeout=30))["prompt_id"]
        wait_until(
            lambda: list((data / "output" / "smoke").glob("smoke_*.png")),
            timeout=60,
            what="the smoke workflow's PNG in the data volume",
        )
        assert pid
        probe = urllib.request.Request(
            base + "/api/object_info/StackProbe", headers={"Authorization": f"Bearer {token}"}
        )
        info = json.load(urllib.request.urlopen(probe, timeout=30))
        first_folder = info["StackProbe"]["input"]["required"]["first"][1]["default"]
        assert first_folder == str(data / "custom_nodes")
        first = comfyui_pid(comfy_port)
        os.kill(first, signal.SIGKILL)
        wait_until(
            lambda: http_status(base + "/readyz") == 503, timeout=30, interval=0.05, what="/readyz 503"
        )
        wait_until(
            lambda: http_status(base + "/readyz") == 200,
            timeout=180,
            interval=0.2,
            what="ComfyUI to come back",
        )
        assert comfyui_pid(comfy_port) != first
        # the restart's own start, timed from the real ComfyUI's log lines (comfy_stack.startup)
        wait_until(
            lambda: (t := startup.read(data / "run" / startup.COMFYUI_FILE)) is not None and t.done,
            timeout=30,
            what="ComfyUI's start timeline to end",
        )
        timeline = startup.read(data / "run" / startup.COMFYUI_FILE)
        assert [p.name for p in timeline.phases][-2:] == [
            "loading nodes and custom node packs",
            "starting the server",
        ]
        assert "probe_node.py" in timeline.packs and not timeline.failed_packs
        assert json.loads(urllib.request.urlopen(base + "/readyz", timeout=10).read())["comfyui_start"]
    finally:
        stop_process(proc, 60, group=True)
