"""A worker's own row (what placement reads: the job it holds, the models its ComfyUI has
loaded) never shows it busy with a job that has ended. Each end is caught the moment its
transaction has committed, before the worker does anything else: whoever reads the ledger
then (a gateway, another worker's claim) must see the worker as it is from then on."""

from __future__ import annotations

import asyncio

import pytest

from tests.comfy_jobs.conftest import SMOKE, wait_job
from tests.support import fake_comfyui


def needing(model: str) -> dict:
    return {"9": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": model}}, **SMOKE}


async def until(check, what: str, timeout: float = 10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not (found := await check()):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.02)
    return found


@pytest.fixture
async def gated(v2, monkeypatch):
    """The stack whose ComfyUI starts each run only when the test lets one through, and
    `ends`: (job, the worker's row's job, its loaded models) read at each end's commit."""
    go: asyncio.Queue = asyncio.Queue()

    async def executor(state, prompt_id, prompt, client_id):
        await go.get()
        await fake_comfyui.execute(state, prompt_id, prompt, client_id)

    v2.up_state["executor"] = executor
    ledger, worker_id, ends = v2.svc.ledger, v2.svc.s.worker_id, []

    def caught(real):
        async def end(job_id, *args, **kw):
            result = await real(job_id, *args, **kw)
            row = await ledger.worker(worker_id)
            ends.append((job_id, row.job_id, row.loaded))
            return result

        return end

    monkeypatch.setattr(ledger, "finish", caught(ledger.finish))
    monkeypatch.setattr(ledger, "hand_back", caught(ledger.hand_back))
    v2.go, v2.ends = go, ends
    yield v2
    for _ in range(8):  # whatever runs a failed test left waiting, so that the stack can stop
        go.put_nowait(None)


async def submit(api, stack, workflow: dict) -> str:
    async with api.post(stack.url("/api/v2/jobs"), json={"workflow": workflow}) as r:
        assert r.status == 201, await r.text()
        return (await r.json())["id"]


async def holding(stack, *job_ids: str) -> None:
    """Until the worker holds these jobs, each submitted to ComfyUI; then its row is written
    (as its periodic beat does while a run goes): the row says it is busy with the first."""
    worker = stack.svc.worker

    async def held():
        return list(worker.held) == list(job_ids) and all(worker.held[j].submitted.is_set() for j in job_ids)

    await until(held, f"the worker to hold {job_ids}")
    await worker.presence.report()
    row = await stack.svc.ledger.worker(worker.id)
    assert row.job_id == job_ids[0]


async def test_a_worker_reads_idle_the_moment_its_job_ends(gated, api):
    job = await submit(api, gated, needing("m.safetensors"))
    await holding(gated, job)
    gated.go.put_nowait(None)
    assert (await wait_job(api, gated, job))["status"] == "succeeded"
    assert gated.ends == [(job, None, ["m.safetensors"])]


async def test_with_the_next_job_held_the_worker_reads_busy_with_that_one(gated, api):
    first = await submit(api, gated, needing("m.safetensors"))
    second = await submit(api, gated, needing("n.safetensors"))
    await holding(gated, first, second)
    gated.go.put_nowait(None)
    assert (await wait_job(api, gated, first))["status"] == "succeeded"
    assert gated.ends == [(first, second, ["m.safetensors"])]
    gated.go.put_nowait(None)
    assert (await wait_job(api, gated, second))["status"] == "succeeded"
    assert gated.ends[1] == (second, None, ["n.safetensors"])


async def test_a_job_canceled_or_given_back_behind_a_run_leaves_the_worker_busy_with_the_run(gated, api):
    running = await submit(api, gated, needing("m.safetensors"))
    behind = await submit(api, gated, needing("m.safetensors"))
    await holding(gated, running, behind)
    async with api.post(gated.url(f"/api/v2/jobs/{behind}/cancel")) as r:
        assert r.status == 200
    assert (await wait_job(api, gated, behind))["status"] == "canceled"
    assert gated.ends == [(behind, running, [])]  # it never ran: nothing of it loaded
    again = await submit(api, gated, needing("n.safetensors"))
    await holding(gated, running, again)
    gated.svc.worker.presence.draining = True  # as a drain request read by its beat
    gated.svc.worker.wake()
    await until(lambda: asyncio.sleep(0, len(gated.ends) == 2), "the job behind to be given back")
    assert gated.ends[1] == (again, running, [])
    gated.go.put_nowait(None)
    assert (await wait_job(api, gated, running))["status"] == "succeeded"
    assert gated.ends[2] == (running, None, ["m.safetensors"])
