"""The admin's "sync models now" (POST /_models/sync): the start's own sync plan run while
the stack serves, one at a time, behind the login and the CSRF check; a model uploaded to
a real S3 server after the start lands in the models folder, no restart. (That ComfyUI then
lists it is checked against the real one in the image tier.)"""

from __future__ import annotations

import asyncio
import sys
import uuid

import aiohttp
import numpy as np
import pytest
from safetensors.numpy import save

from comfy_stack import run_files
from comfyctl import sync_job
from model_sync import progress as sync_progress
from tests.support.s3_server import start_moto


@pytest.fixture(scope="module")
def s3():
    server = start_moto()
    yield server
    server.stop()


def plan_for(run_dir, cmds, env=None):
    sync_job.Plan(cmds, env or {}).save(run_dir / run_files.SYNC_PLAN)


async def sync_state(http, stack) -> dict:
    async with http.get(stack.url("/_models/sync"), headers={"Authorization": f"Bearer {stack.token}"}) as r:
        assert r.status == 200
        return await r.json()


async def test_a_model_uploaded_after_the_start_is_synced_on_demand(make_stack, s3, tmp_path, http):
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    client = s3.client()
    client.create_bucket(Bucket=bucket)
    models, run = tmp_path / "models", tmp_path / "run"
    run.mkdir()
    progress = sync_progress.path_for(models)
    cmds = sync_job.commands(tmp_path / "none.yaml", models, (), f"s3://{bucket}/models", progress)
    plan_for(run, cmds, s3.env())
    stack = await make_stack(run_dir=run, progress_file=progress)
    bearer = {"Authorization": f"Bearer {stack.token}"}
    body = save({"w": np.arange(256, dtype=np.float32)})
    client.put_object(Bucket=bucket, Key="models/loras/new_style.safetensors", Body=body)

    async with http.post(stack.url("/_models/sync"), headers=bearer) as r:
        assert r.status == 202, await r.text()
        assert (await r.json())["running"] is True

    async def finished() -> dict:
        while (st := await sync_state(http, stack))["running"]:
            await asyncio.sleep(0.1)
        return st

    st = await asyncio.wait_for(finished(), 120)
    assert st["last_exit"] == 0 and st["progress"]["state"] == "done"
    assert (models / "loras" / "new_style.safetensors").read_bytes() == body
    assert not list((models / "loras").glob(".*")), "no partial file is left beside it"


async def test_one_sync_at_a_time_and_none_without_a_plan(make_stack, tmp_path, http):
    run = tmp_path / "run"
    run.mkdir()
    stack = await make_stack(run_dir=run)
    bearer = {"Authorization": f"Bearer {stack.token}"}
    async with http.post(stack.url("/_models/sync"), headers=bearer) as r:
        assert r.status == 409 and (await r.json())["error"] == "no_sync_plan"
    release = tmp_path / "release"
    wait = f"import pathlib, time\nwhile not pathlib.Path({str(release)!r}).exists(): time.sleep(0.05)"
    plan_for(run, [[sys.executable, "-c", wait]])

    # everything at once: exactly one starts
    async def post() -> int:
        async with http.post(stack.url("/_models/sync"), headers=bearer) as r:
            return r.status

    statuses = sorted(await asyncio.gather(*(post() for _ in range(8))))
    assert statuses == [202] + [409] * 7
    release.write_text("")
    await asyncio.wait_for(_until_stopped(http, stack), 60)


async def _until_stopped(http, stack) -> None:
    while (await sync_state(http, stack))["running"]:
        await asyncio.sleep(0.05)


async def test_sync_now_needs_a_login_and_a_same_origin_page(make_stack, tmp_path, http):
    stack = await make_stack(run_dir=tmp_path)
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.post(stack.url("/_models/sync")) as r:
            assert r.status == 401
    async with http.post(
        stack.url("/login"), json={"username": "admin", "password": stack.settings.admin_password}
    ) as r:
        assert r.status == 200
    async with http.post(stack.url("/_models/sync"), headers={"Origin": "https://evil.example"}) as r:
        assert r.status == 403, "a cross-site page cannot start a sync with the admin's cookie"


def test_the_plan_file_is_private_and_reads_back(tmp_path):
    plan = sync_job.Plan([["a", "b"]], {"K": "v"})
    plan.save(tmp_path / "p.json")
    assert (tmp_path / "p.json").stat().st_mode & 0o077 == 0
    assert sync_job.Plan.load(tmp_path / "p.json") == plan
    (tmp_path / "bad.json").write_text('{"commands": 3}')
    assert sync_job.Plan.load(tmp_path / "bad.json") is None
