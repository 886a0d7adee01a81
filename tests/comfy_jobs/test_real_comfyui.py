"""Opt-in tier: the v2 API in front of a real ComfyUI on CPU (COMFYUI_DIR, COMFYUI_PYTHON):
comfy-sdk runs the smoke workflow end to end, and the shapes the worker reads (history
entries of a failed run, rejections) are ComfyUI's own."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import aiohttp
import pytest

from auth_proxy.accounts import open_accounts
from auth_proxy.app import create_app
from auth_proxy.settings import Settings
from comfy_jobs.settings import JobSettings
from tests.comfy_jobs.conftest import wait_job
from tests.support.comfyui import SMOKE_PROMPT
from tests.support.fake_comfyui import tiny_png

pytestmark = pytest.mark.comfyui
comfy_sdk = pytest.importorskip("comfy_sdk")


class Stack:
    def __init__(self, port: int, token: str):
        self.port, self.token = port, token

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
async def stack(comfy, tmp_path, aiohttp_server):
    settings = replace(
        Settings(),
        host="127.0.0.1",
        port=0,
        upstream=comfy.url,
        state_dir=tmp_path / "auth",
        admin_password="optin-password",
        progress_file=tmp_path / "none.json",
        jobs=JobSettings(jobs_dir=tmp_path / "jobs", lease_s=5, worker_id="optin"),
    )
    token = open_accounts(settings).create_token("t")
    server = await aiohttp_server(create_app(settings))
    return Stack(server.port, token)


async def test_comfy_sdk_runs_the_smoke_workflow_end_to_end(comfy, stack, monkeypatch, tmp_path):
    monkeypatch.setenv("COMFY_BASE_URL", stack.url())
    monkeypatch.setenv("COMFY_API_KEY", stack.token)
    (tmp_path / "in.png").write_bytes(tiny_png(8, 8, 200))
    graph = {
        "10": {"class_type": "LoadImage", "inputs": {"image": "x.png"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["10", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "v2/sdk"}},
    }

    def run():
        with comfy_sdk.Comfy() as client:
            smoke = client.run(client.workflows.from_json(SMOKE_PROMPT))
            wf = client.workflows.from_json(graph)
            wf.set_input("10", "image", client.assets.from_file(tmp_path / "in.png"))
            job = client.submit(wf)
            events = [type(e).__name__ for e in job.events()]
            out = job.result().get_outputs("9")[0]
            return smoke, events, out.to_bytes(), out

    smoke, events, data, out = await asyncio.to_thread(run)
    assert smoke.status == "succeeded" and smoke.get_outputs("4")[0].type == "image"
    assert events[0] == "StatusChange" and "OutputReady" in events
    [saved] = (comfy.data / "output/v2").glob("sdk_*.png")
    assert data == saved.read_bytes() and out.content_type == "image/png"


async def test_a_node_that_fails_while_running_is_reported_from_comfyuis_history(comfy, stack):
    # SaveImage refuses, at run time, to write outside the output folder.
    graph = {
        **SMOKE_PROMPT,
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "../../escape"}},
    }
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {stack.token}"}) as api:
        async with api.post(stack.url("/api/v2/jobs"), json={"workflow": graph}) as r:
            assert r.status == 201
            job = await r.json()
        done = await wait_job(api, stack, job["id"], timeout=60)
    assert done["status"] == "failed" and done["attempts"] == 1
    err = done["error"]
    assert (
        err["code"] == "node_execution_error" and err["node_id"] == "4" and err["class_type"] == "SaveImage"
    )
    assert "outside the output folder" in err["message"] and 'File "' in (err["traceback"] or "")


async def test_a_workflow_comfyui_rejects_is_failed_with_its_node_errors(comfy, stack):
    graph = {
        **SMOKE_PROMPT,
        "3": {
            **SMOKE_PROMPT["3"],
            "inputs": {**SMOKE_PROMPT["3"]["inputs"], "upscale_method": "no-such-method"},
        },
    }
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {stack.token}"}) as api:
        async with api.post(stack.url("/api/v2/jobs"), json={"workflow": graph}) as r:
            job = await r.json()
        done = await wait_job(api, stack, job["id"], timeout=60)
    assert done["status"] == "failed" and done["error"]["code"] == "invalid_workflow"
    assert done["error"]["node_id"] == "3" and "3" in done["error"]["details"]["node_errors"]


async def test_cancel_interrupts_the_run_in_comfyui(comfy, stack):
    # A chain of blurs: each takes a moment on a CPU, and ComfyUI honours an interrupt
    # before the next node starts.
    long = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 768, "height": 768, "batch_size": 4, "color": 0},
        }
    }
    for n in range(2, 9):
        long[str(n)] = {
            "class_type": "ImageBlur",
            "inputs": {"image": [str(n - 1), 0], "blur_radius": 15, "sigma": 3.0},
        }
    long["9"] = {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "long"}}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {stack.token}"}) as api:
        async with api.post(stack.url("/api/v2/jobs"), json={"workflow": long}) as r:
            job = await r.json()
        for _ in range(600):  # until ComfyUI is executing the blurs
            async with api.get(stack.url(f"/api/v2/jobs/{job['id']}")) as r:
                if ((await r.json()).get("progress") or {}).get("current_node_class") == "ImageBlur":
                    break
            await asyncio.sleep(0.1)
        async with api.post(stack.url(f"/api/v2/jobs/{job['id']}/cancel")) as r:
            assert (await r.json())["status"] in ("canceling", "canceled")
        done = await wait_job(api, stack, job["id"], timeout=120)
    assert done["status"] == "canceled" and done["outputs"] == []
    assert not list((comfy.data / "output").glob("long_*.png"))
