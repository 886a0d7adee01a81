"""Clients work unchanged with a member's token: the official comfy-sdk (v2) and
`comfyctl run` (native and --v2), two members at the same moment, each getting their own
outputs, and neither reaching the other's job."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from comfyctl import run as runmod
from tests.comfy_jobs.conftest import SMOKE, wait_job
from tests.support.comfyctl import run_args as args
from tests.support.proxy import add_account

comfy_sdk = pytest.importorskip("comfy_sdk")


def submit_and_fetch(url: str, token: str, out: Path, monkeypatch) -> tuple[str, bytes]:
    monkeypatch.setenv("COMFY_BASE_URL", url)
    monkeypatch.setenv("COMFY_API_KEY", token)
    with comfy_sdk.Comfy() as client:
        job = client.submit(client.workflows.from_json(SMOKE))
        result = job.result()
        output = result.get_outputs("4")[0]
        out.mkdir(parents=True, exist_ok=True)
        output.to_file(out / output.name)
        return job.id, (out / output.name).read_bytes()


async def test_comfy_sdk_with_two_members_at_once(v2, monkeypatch, tmp_path):
    alice, bob = add_account(v2.settings, "alice"), add_account(v2.settings, "bob")
    (a_id, a_png), (b_id, b_png) = await asyncio.gather(
        asyncio.to_thread(submit_and_fetch, v2.url(), alice.token, tmp_path / "a", monkeypatch),
        asyncio.to_thread(submit_and_fetch, v2.url(), bob.token, tmp_path / "b", monkeypatch),
    )
    assert a_png.startswith(b"\x89PNG") and b_png.startswith(b"\x89PNG") and a_id != b_id

    def peek(token: str, job_id: str) -> str:
        monkeypatch.setenv("COMFY_API_KEY", token)
        with comfy_sdk.Comfy() as client:
            try:
                return client.jobs.get(job_id).status
            except Exception as exc:  # noqa: BLE001 - the SDK's not-found error, whatever its class
                return type(exc).__name__

    assert await asyncio.to_thread(peek, alice.token, a_id) == "succeeded"
    assert await asyncio.to_thread(peek, bob.token, a_id) != "succeeded", "bob cannot see alice's job"
    assert await asyncio.to_thread(peek, v2.token, a_id) == "succeeded", "the admin sees everyone's"


@pytest.mark.parametrize("mode", ["native", "v2"])
async def test_comfyctl_run_with_a_members_token(v2, tmp_path, mode):
    carol = add_account(v2.settings, "carol")
    flags = ("--v2",) if mode == "v2" else ()
    result = await runmod.run(args(tmp_path, v2.url(), flags=flags, token=carol.token))
    (path,) = [Path(p) for p in result["outputs"]]
    assert path.read_bytes().startswith(b"\x89PNG")


async def test_a_members_v2_job_is_checked_and_saves_in_their_folder(v2):
    dora = add_account(v2.settings, "dora")
    reach = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "erin/x_00001_.png [output]"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    }
    async with aiohttp.ClientSession(headers=dora.bearer) as s:
        async with s.post(v2.url("/api/v2/jobs"), json={"workflow": reach}) as r:
            body = await r.json()
            assert r.status == 403 and body["error"]["code"] == "forbidden", body
            assert "node 1" in body["error"]["message"]
        async with s.post(v2.url("/api/v2/jobs"), json={"workflow": SMOKE}) as r:
            assert r.status == 201
            job_id = (await r.json())["id"]
        await wait_job(s, v2, job_id)
    saved = list((v2.tmp / "comfy" / "output" / "dora").rglob("*.png"))
    assert len(saved) == 1, "a member's v2 outputs land in their own folder"
