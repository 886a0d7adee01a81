"""The official client, unchanged: comfy-sdk from PyPI against the proxy with a token."""

from __future__ import annotations

import asyncio

import pytest

from tests.comfy_jobs.conftest import SMOKE
from tests.support.fake_comfyui import tiny_png

comfy_sdk = pytest.importorskip("comfy_sdk")


def sdk_client(stack, monkeypatch):
    monkeypatch.setenv("COMFY_BASE_URL", stack.url())
    monkeypatch.setenv("COMFY_API_KEY", stack.token)
    return comfy_sdk.Comfy()


async def test_upload_submit_follow_events_download(v2, monkeypatch, tmp_path):
    """Upload an input asset, submit a workflow that loads it, follow the SSE events, and
    download the output: all through comfy-sdk's own calls, in a thread (it is synchronous)."""
    picture = tiny_png(4, 4, 7)
    graph = {
        "10": {"class_type": "LoadImage", "inputs": {"image": "placeholder.png"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["10", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "sdk/out"}},
    }

    (tmp_path / "photo.png").write_bytes(picture)

    def run():
        with sdk_client(v2, monkeypatch) as client:
            wf = client.workflows.from_json(graph)
            wf.set_input("10", "image", client.assets.from_file(tmp_path / "photo.png"))
            job = client.submit(wf)
            events = list(job.events())
            result = job.result()
            out = result.get_outputs("9")[0]
            target = tmp_path / out.name
            out.to_file(target)
            return job.id, events, result, target.read_bytes(), out

    job_id, events, result, data, out = await asyncio.to_thread(run)

    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "StatusChange" and events[-1].status == "succeeded"
    assert "Progress" in kinds and "OutputReady" in kinds
    assert result.status == "succeeded" and out.type == "image" and out.content_type == "image/png"
    saved = sorted((v2.tmp / "comfy/output/sdk").glob("out_*.png"))
    assert len(saved) == 1 and data == saved[0].read_bytes()  # the very bytes ComfyUI saved
    # The input reached ComfyUI's input folder under the name the workflow was given.
    inputs = list((v2.tmp / "comfy/input").glob("v2-*-photo.png"))
    assert len(inputs) == 1 and inputs[0].read_bytes() == picture
    history = v2.up_state["history"]
    assert len(history) == 1
    [entry] = history.values()
    assert entry["prompt"][2]["10"]["inputs"]["image"] == inputs[0].name


async def test_second_upload_of_the_same_bytes_is_deduplicated(v2, monkeypatch):
    def run():
        with sdk_client(v2, monkeypatch) as client:
            a = client.assets.from_bytes(b"same bytes", filename="a.bin")
            a.commit()
            b = client.assets.from_bytes(b"same bytes", filename="b.bin")
            b.commit()
            return a, b

    a, b = await asyncio.to_thread(run)
    assert a.id != b.id and a.hash == b.hash


async def test_sdk_run_and_cancel(make_v2, monkeypatch):
    stack = await make_v2(upstream_delay=30.0)

    def run():
        with sdk_client(stack, monkeypatch) as client:
            job = client.submit(client.workflows.from_json(SMOKE))
            import time

            deadline = time.monotonic() + 10
            while job.refresh().status != "running" and time.monotonic() < deadline:
                time.sleep(0.05)
            job.cancel()
            job.wait(timeout=20)
            return job.status

    assert await asyncio.to_thread(run) == "canceled"


async def test_the_example_in_docs_api_md_runs(v2, monkeypatch, tmp_path):
    from tests.support import REPO

    text = (REPO / "docs/api.md").read_text()
    section = text[text.index("## The Comfy API v2 with comfy-sdk") :]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    code = code.replace("https://comfy.example", v2.url()).replace(
        '"workflows/api/smoke.json"', repr(str(REPO / "workflows/api/smoke.json"))
    )
    monkeypatch.setenv("COMFY_TOKEN", v2.token)
    monkeypatch.chdir(tmp_path)
    await asyncio.to_thread(exec, compile(code, "docs/api.md", "exec"), {})
    [saved] = tmp_path.glob("smoke_*.png")
    assert saved.read_bytes().startswith(b"\x89PNG")
