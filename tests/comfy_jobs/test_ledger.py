"""The ledger on its own: the state machine, leases, and claims from several processes at
once against one SQLite file (each job is claimed by exactly one of them)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest

from comfy_jobs import model
from comfy_jobs.errors import IdempotencyKeyReuse, LedgerError, QueueFull
from comfy_jobs.model import IdemKey
from comfy_jobs.sqlstore import SqlLedger
from tests.support import python_env


@pytest.fixture(params=["sqlite", "postgresql"])
async def ledger(request, tmp_path):
    """The same tests against both backends: SQLite on disk and a real PostgreSQL."""
    url = (
        f"sqlite:///{tmp_path}/ledger.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    )
    led = SqlLedger(url)
    yield led
    await led.close()


def test_state_machine():
    assert model.allowed("queued", "running") and model.allowed("running", "canceling")
    assert model.allowed("canceling", "canceled") and model.allowed("canceling", "succeeded")
    for terminal in model.TERMINAL:
        assert not any(model.allowed(terminal, s) for s in model.ACTIVE + model.TERMINAL)
    assert not model.allowed("queued", "succeeded")


async def test_a_lease_that_runs_out_is_claimed_by_another_worker(ledger):
    await ledger.create_job("job_a", {"1": {}}, None, None, None, 0, 3600)
    # A lease long enough for the attempt to be recorded under it on a loaded machine (0.2 s
    # once ran out first), then waited out.
    first = await ledger.claim("w1", 1.0)
    assert first.id == "job_a" and await ledger.claim("w2", 10) is None
    await ledger.start_attempt("job_a", "w1", "p1")
    await asyncio.sleep(1.1)
    second = await ledger.claim("w2", 10)
    assert second.id == "job_a" and second.attempts == 1 and second.prompt_id == "p1"
    assert not (await ledger.heartbeat("job_a", "w1", 10)).held  # w1 lost it
    assert not await ledger.finish("job_a", "w1", "succeeded", None)
    assert await ledger.finish("job_a", "w2", "succeeded", None)
    assert (await ledger.get_job("job_a")).status == "succeeded"
    assert await ledger.claim("w3", 10) is None  # a finished job is never claimed again


async def test_idempotency_and_queue_limit(ledger):
    await ledger.create_job("job_1", {}, None, None, IdemKey("k", "h1"), 1, 3600)
    job, replayed = await ledger.create_job("job_2", {}, None, None, IdemKey("k", "h1"), 1, 3600)
    assert job.id == "job_1" and replayed
    with pytest.raises(IdempotencyKeyReuse):
        await ledger.create_job("job_3", {}, None, None, IdemKey("k", "h2"), 1, 3600)
    with pytest.raises(QueueFull):
        await ledger.create_job("job_4", {}, None, None, None, 1, 3600)


async def test_queued_jobs_past_their_deadline_expire(ledger):
    await ledger.create_job("job_old", {}, None, None, None, 0, 0.01)
    await asyncio.sleep(0.05)
    assert await ledger.claim("w", 10) is None
    assert (await ledger.get_job("job_old")).status == "expired"


def test_an_unreadable_ledger_names_the_setting(tmp_path):
    (tmp_path / "ledger.db").write_text("not a database")
    with pytest.raises(LedgerError, match="COMFY_JOBS_DIR"):
        SqlLedger(f"sqlite:///{tmp_path}/ledger.db")


CLAIMER = """
import asyncio, json, sys
from comfy_jobs.sqlstore import SqlLedger
async def main():
    led = SqlLedger(sys.argv[1])
    got = []
    while True:
        job = await led.claim(sys.argv[2], 60)
        if job is None:
            break
        got.append(job.id)
        await led.finish(job.id, sys.argv[2], "succeeded", None)
    await led.close()
    print(json.dumps(got))
asyncio.run(main())
"""


async def test_workers_in_several_processes_never_claim_the_same_job(ledger, tmp_path):
    for i in range(60):
        await ledger.create_job(f"job_{i:03d}", {}, None, None, None, 0, 3600)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, ledger.url, f"w{n}"],
            env=python_env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    deadline = time.monotonic() + 120
    claimed = []
    for p in procs:
        out, _ = p.communicate(timeout=max(1, deadline - time.monotonic()))
        assert p.returncode == 0
        claimed += json.loads(out)
    assert sorted(claimed) == [f"job_{i:03d}" for i in range(60)]  # each exactly once
