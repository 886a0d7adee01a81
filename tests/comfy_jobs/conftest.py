"""The proxy with the Comfy API v2 and its ledger, in front of the ComfyUI stand-in, on real
loopback sockets in this process (the fault tests run them as processes instead)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
import pytest

from auth_proxy.services import JOBS
from auth_proxy.settings import Settings
from comfy_jobs.settings import JobSettings
from comfy_jobs.sqlledger import SqlLedger
from tests.support import REPO, fake_comfyui

SMOKE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "4": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "smoke/smoke"}},
}
SMOKE_FILE = REPO / "workflows/api/smoke.json"


@dataclass
class V2Stack:
    proxy: object
    upstream: object
    settings: Settings
    token: str
    tmp: Path

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.proxy.port}{path}"

    @property
    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def up_state(self) -> dict:
        return self.upstream.app[fake_comfyui.STATE]

    @property
    def svc(self):
        return self.proxy.app[JOBS]


@pytest.fixture
async def make_v2(tmp_path, aiohttp_server, proxy_for):
    count = iter(range(100))

    async def make(upstream_delay: float = 0.0, **job_overrides) -> V2Stack:
        base = tmp_path / f"v2stack{next(count)}"
        upstream = await aiohttp_server(
            fake_comfyui.create_app(base / "comfy" / "output", delay=upstream_delay)
        )
        jobs = replace(
            JobSettings(jobs_dir=base / "jobs", lease_s=3.0, worker_id="test-worker"), **job_overrides
        )
        proxied = await proxy_for(f"http://127.0.0.1:{upstream.port}", jobs=jobs)
        return V2Stack(proxied.server, upstream, proxied.settings, proxied.token, base)

    return make


@pytest.fixture
async def v2(make_v2):
    return await make_v2()


@pytest.fixture
async def api(v2):
    async with aiohttp.ClientSession(headers=v2.auth) as s:
        yield s


async def wait_job(
    session: aiohttp.ClientSession,
    stack: V2Stack,
    job_id: str,
    statuses=("succeeded", "failed", "canceled", "expired"),
    timeout: float = 20.0,
) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with session.get(stack.url(f"/api/v2/jobs/{job_id}")) as r:
            job = await r.json()
        if job["status"] in statuses:
            return job
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"job {job_id} still {job['status']} after {timeout}s")
        await asyncio.sleep(0.05)


@pytest.fixture(params=["sqlite", "postgresql"])
async def ledger(request, tmp_path):
    """The same tests against both backends: SQLite on disk and a real PostgreSQL."""
    url = (
        f"sqlite:///{tmp_path}/ledger.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    )
    led = SqlLedger(url)
    yield led
    await led.close()
