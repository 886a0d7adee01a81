"""The ledger on its own: the state machine, leases, and claims from several processes at
once against one SQLite file (each job is claimed by exactly one of them)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest

from comfy_jobs.errors import IdempotencyKeyReuse, LedgerError, QueueFull
from comfy_jobs.model import Asset, IdemKey, Output
from comfy_jobs.sqlledger import SqlLedger
from tests.support import python_env


async def test_the_state_machine_is_the_ledgers_statements(ledger):
    """The transitions as the ledger makes them (queries.py): queued -> canceled at once,
    running -> canceling -> canceled, and no way out of a terminal state."""
    for job_id in ("job_q", "job_r"):
        await ledger.create_job(job_id, {"1": {}}, None, None, None, 0, 3600)
    assert (await ledger.request_cancel("job_q")).status == "canceled"
    running = await ledger.claim("w1", 60)
    assert running.id == "job_r" and running.status == "running"
    assert (await ledger.request_cancel("job_r")).status == "canceling"
    assert (await ledger.heartbeat("job_r", "w1", 60)).cancel_requested
    assert await ledger.finish("job_r", "w1", "canceled", None)
    for job_id in ("job_q", "job_r"):
        assert (await ledger.request_cancel(job_id)).status == "canceled"
        assert not await ledger.finish(job_id, "w1", "succeeded", None)
        assert (await ledger.get_job(job_id)).status == "canceled"
    assert await ledger.claim("w2", 60) is None


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


async def test_a_claim_records_the_first_attempt_in_its_transaction(ledger):
    """The worker passes the id its first submission will carry: the claim records attempt 1
    under it; a job tried before keeps its last attempt (the worker resumes that one)."""
    for job_id in ("job_a", "job_b"):
        await ledger.create_job(job_id, {"1": {}}, None, None, None, 0, 3600)
    first = await ledger.claim("w1", 60, "p1")
    assert (first.id, first.attempts, first.prompt_id, first.others_waiting) == ("job_a", 1, "p1", True)
    assert [(a["n"], a["prompt_id"], a["ended_at"]) for a in await ledger.attempts_of("job_a")] == [
        (1, "p1", None)
    ]
    await ledger.abort_attempt("job_a", "w1", "p1")  # it never reached ComfyUI
    assert await ledger.attempts_of("job_a") == [] and (await ledger.get_job("job_a")).attempts == 0
    assert await ledger.start_attempt("job_a", "w1", "p2") == 1
    await ledger.release("job_a", "w1")
    again = await ledger.claim("w2", 60, "p3")  # the oldest: job_a, tried before
    assert (again.id, again.attempts, again.prompt_id) == ("job_a", 1, "p2")
    assert [a["prompt_id"] for a in await ledger.attempts_of("job_a")] == ["p2"]
    last = await ledger.claim("w2", 60, "p4")
    assert (last.id, last.prompt_id, last.others_waiting) == ("job_b", "p4", False)
    await ledger.hand_back("job_b", "w2", "p4")  # a drain, before it was submitted
    back = await ledger.get_job("job_b")
    assert (back.status, back.attempts, back.prompt_id, back.started_at) == ("queued", 0, None, None)
    assert await ledger.attempts_of("job_b") == []


async def test_a_jobs_end_writes_its_last_outputs_in_the_same_transaction(ledger):
    """Outputs handed to finish are written with the terminal state, each once per node and
    name; a worker that no longer holds the job writes none of them."""

    def out(name: str, asset_id: str) -> Output:
        asset = Asset(asset_id, "blake3:" + "0" * 64, 1, "image/png", name, time.time(), "job_a", ["output"])
        return Output("9", name, "image", asset)

    await ledger.create_job("job_a", {"9": {}}, None, None, None, 0, 3600)
    await ledger.claim("w1", 60, "p1")
    assert await ledger.add_output("job_a", "9", "a.png", "image", out("a.png", "asset_a").asset)
    assert not await ledger.finish("job_a", "w2", "succeeded", None, outputs=[out("x.png", "asset_x")])
    assert [o.name for o in (await ledger.get_job("job_a")).outputs] == ["a.png"]
    last = [out("a.png", "asset_a2"), out("b.png", "asset_b")]
    assert await ledger.finish("job_a", "w1", "succeeded", None, None, ("p1", "succeeded", "{}"), last)
    job = await ledger.get_job("job_a")
    assert job.status == "succeeded"
    assert [(o.name, o.asset.id) for o in job.outputs] == [("a.png", "asset_a"), ("b.png", "asset_b")]
    assert await ledger.get_asset("asset_x") is None
    assert [a["outcome"] for a in await ledger.attempts_of("job_a")] == ["succeeded"]


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
from comfy_jobs.sqlledger import SqlLedger
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


async def test_creations_at_once_each_get_their_own_answer(tmp_path):
    """Jobs created at the same moment on SQLite (one commit for them all) are each refused
    or recorded as if created one after another: the queue limit counts the ones before,
    a key sent twice makes one job, and every job answered is there for a new reader."""
    ledger = SqlLedger(f"sqlite:///{tmp_path}/ledger.db")
    made = await asyncio.gather(
        *[ledger.create_job(f"job_{i}", {}, None, None, None, 3, 3600) for i in range(5)],
        return_exceptions=True,
    )
    assert sum(isinstance(m, QueueFull) for m in made) == 2
    recorded = [job.id for job, _replayed in (m for m in made if not isinstance(m, BaseException))]
    assert len(recorded) == 3
    same = await asyncio.gather(
        *[ledger.create_job(f"job_k{i}", {}, None, None, IdemKey("k", "h"), 0, 3600) for i in range(3)]
    )
    assert len({job.id for job, _replayed in same}) == 1
    assert sorted(replayed for _job, replayed in same) == [False, True, True]
    fresh = SqlLedger(ledger.url)
    try:
        for job_id in recorded + [same[0][0].id]:
            assert (await fresh.get_job(job_id)).status == "queued"
    finally:
        await fresh.close()
        await ledger.close()


async def test_a_claim_looks_again_at_jobs_another_claim_held_for_a_moment(pg_url, monkeypatch):
    """Two workers woken by the same job claim together: the one that is not its favourite
    locks it for a moment (SKIP LOCKED) and leaves it; the favourite, which skipped it then,
    looks again once that claim has ended instead of a second later, when the favourite's
    preference has run out (and the other worker takes the job)."""
    from sqlalchemy import text

    from comfy_jobs import sqlledger
    from comfy_jobs.model import WorkerInfo

    ledger = SqlLedger(pg_url)
    try:
        await ledger.worker_beat(WorkerInfo("w0", None, ["checkpoints/m.safetensors"], ["m.safetensors"]))
        await ledger.worker_beat(WorkerInfo("w1", None, ["checkpoints/m.safetensors"]))
        graph = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}}}
        await ledger.create_job("job_m", graph, None, None, None, 0, 3600)
        other = ledger.w.connect()  # the other worker's claim, holding the job for its transaction
        other.begin()
        other.execute(text("SELECT seq FROM jobs WHERE id = 'job_m' FOR UPDATE"))
        pauses = []

        def pause(low, high):  # the other claim ends during the claimer's pause
            pauses.append(high)
            if other.in_transaction():
                other.commit()
            return low

        monkeypatch.setattr(sqlledger.random, "uniform", pause)
        job = await ledger.claim("w0", 60)
        other.close()
        assert job is not None and job.id == "job_m" and pauses
    finally:
        await ledger.close()
