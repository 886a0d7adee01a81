"""Opt-in tier: real CPU ComfyUIs as the workers' ComfyUIs (COMFYUI_DIR, COMFYUI_PYTHON), with
the gateway, PostgreSQL and S3 as in the default tier: jobs through comfy-sdk all succeed
exactly once while one worker is killed with kill -9 mid-run, and every output is the file
the ComfyUI that ran it saved."""

from __future__ import annotations

import pytest
from blake3 import blake3

from tests.support import wait_until
from tests.support.comfyui import SMOKE_PROMPT, RealComfyUI

pytestmark = pytest.mark.comfyui
comfy_sdk = pytest.importorskip("comfy_sdk")
JOBS = 6


@pytest.fixture
def comfyuis(tmp_path):
    started = []
    try:
        for n in range(2):
            # the pinned packs add nothing to the smoke workflow and a minute to each start
            started.append(RealComfyUI(tmp_path / f"comfy{n}", ("--disable-all-custom-nodes",)).start())
        yield started
    finally:
        for c in started:
            c.stop()


def test_jobs_survive_a_killed_worker_on_real_comfyuis(cluster, comfyuis, monkeypatch, tmp_path):
    gateway = cluster.add_gateway()
    workers = [cluster.add_worker_beside(c.url, COMFY_JOB_MAX_ATTEMPTS="5") for c in comfyuis]
    monkeypatch.setenv("COMFY_BASE_URL", cluster.url(gateway))
    with comfy_sdk.Comfy(api_key=cluster.token) as client:
        jobs = [client.submit(client.workflows.from_json(SMOKE_PROMPT)) for _ in range(JOBS)]
        wait_until(
            lambda: any(j.refresh().status == "running" for j in jobs), timeout=60, what="a running job"
        )
        workers[0].proc.kill9()  # its ComfyUI goes on; the worker, back, follows the run again
        cluster.start(workers[0])
        for job in jobs:
            job.wait(timeout=240)
        assert [j.status for j in jobs] == ["succeeded"] * JOBS
        saved = [f.read_bytes() for c in comfyuis for f in (c.data / "output").rglob("*.png")]
        for n, job in enumerate(jobs):
            assert job.outputs
            for out in job.outputs:
                data = out.to_file(tmp_path / f"{n}-{out.name}").read_bytes()
                assert data in saved
                [(digest,)] = cluster.sql("SELECT hash FROM assets WHERE id = %s", out.id)
                assert digest == "blake3:" + blake3(data).hexdigest()
    for job in jobs:
        outcomes = [
            o for (o,) in cluster.sql("SELECT outcome FROM attempts WHERE job_id = %s ORDER BY n", job.id)
        ]
        assert outcomes.count("succeeded") == 1 and outcomes[-1] == "succeeded"
