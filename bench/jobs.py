"""Benchmark: the v2 job API against ComfyUI's own /prompt, in the same run.

One ComfyUI stand-in (tests/support/fake_comfyui.py, prompts that take no time) and the
proxy with its job ledger in front of it, as separate processes on loopback:
  direct   client -> POST /prompt on the stand-in (what ComfyUI's own API gives)
  v2       client -> POST /api/v2/jobs on the proxy (Bearer) -> ledger -> worker -> /prompt
Measured:
  submit-to-start: from the client's POST until the stand-in starts the run (its own clock,
    /_test/starts), one job at a time: the overhead the ledger and worker add per job;
  throughput: BURST jobs submitted (CONCURRENCY at a time), until the last one has
    finished (jobs/s), watched from /history and from the ledger's file respectively;
  submit-to-done: the same, until the ledger says succeeded, against /history on the
    stand-in (what a client of ComfyUI's own API waits);
  at once: AT_ONCE jobs submitted together, until the last has finished (jobs/s);
  gap: GAP_JOBS jobs of GAP_JOB_S seconds each submitted together, on a stand-in whose runs
    take that long: between one run's end and the next one's start, on the stand-in's own
    clock (/_test/runs), the time a GPU would idle with jobs waiting;
  ledger: the ledger alone, create -> claim (with the attempt) -> finish cycles per second
    (SQLite, creation and end fsynced), the ceiling the ledger puts on throughput.
Prints a table with ratios and writes bench/results/jobs.json. Run it as
`python -m bench.jobs` from the repository (make bench-jobs). Timings are noisy on a shared
machine; the load average at the start and end is recorded beside them.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

from bench import save
from comfy_jobs.sqlledger import SqlLedger
from tests.support.jobs_stack import JobsStack

SEQUENTIAL = 40
BURST = 200
CONCURRENCY = 16
LEDGER_CYCLES = 300
AT_ONCE = 40
GAP_JOBS = 20
GAP_JOB_S = 0.1
GRAPH = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "4": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bench/b"}},
}


async def starts(session, comfy: str) -> dict:
    async with session.get(comfy + "/_test/starts") as r:
        return await r.json()


async def direct_one(session, comfy: str) -> tuple[str, float]:
    t0 = time.time()
    async with session.post(comfy + "/prompt", json={"prompt": GRAPH}) as r:
        pid = (await r.json())["prompt_id"]
    await wait_history(session, comfy, pid)
    return pid, t0


async def submit_direct(session, comfy: str) -> str:
    async with session.post(comfy + "/prompt", json={"prompt": GRAPH}) as r:
        return (await r.json())["prompt_id"]


async def wait_history(session, comfy: str, pid: str) -> None:
    while True:
        async with session.get(f"{comfy}/history/{pid}") as r:
            if pid in await r.json():
                return
        await asyncio.sleep(0.002)


async def v2_submit(session, base: str) -> tuple[str, float]:
    t0 = time.time()
    async with session.post(
        base + "/api/v2/jobs", json={"workflow": GRAPH}, headers={"Idempotency-Key": str(uuid.uuid4())}
    ) as r:
        assert r.status == 201, await r.text()
        return (await r.json())["id"], t0


def ledger_status(stack: JobsStack) -> dict[str, str]:
    """Every job's status, read from the SQLite file beside the proxy: watching this way
    puts no load on the proxy, as watching /history puts none on ComfyUI's queue."""
    import sqlite3

    with sqlite3.connect(f"file:{stack.base / 'jobs/ledger.db'}?mode=ro", uri=True) as c:
        return dict(c.execute("SELECT id, status FROM jobs"))


async def v2_wait(stack: JobsStack, job_ids: set[str], interval: float) -> None:
    while True:
        done = {
            k: v for k, v in ledger_status(stack).items() if k in job_ids and v in ("succeeded", "failed")
        }
        if len(done) == len(job_ids):
            assert set(done.values()) == {"succeeded"}, done
            return
        await asyncio.sleep(interval)


async def history_wait(session, comfy: str, pids: set[str], interval: float) -> None:
    while True:
        async with session.get(comfy + "/history") as r:
            if pids <= set(await r.json()):
                return
        await asyncio.sleep(interval)


async def bounded(n: int, fn):
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(_):
        async with sem:
            return await fn()

    return await asyncio.gather(*[one(i) for i in range(n)])


async def measure(stack: JobsStack) -> dict:
    comfy, base = f"http://127.0.0.1:{stack.comfy_port}", stack.url()
    res: dict = {}
    async with (
        aiohttp.ClientSession() as plain,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {stack.token}"}) as api,
    ):
        # warm both paths (connections, the ledger's first writes, object_info cache)
        for _ in range(3):
            await direct_one(plain, comfy)
            job, _t = await v2_submit(api, base)
            await v2_wait(stack, {job}, 0.002)
        lat = []
        for _ in range(SEQUENTIAL):
            pid, t0 = await direct_one(plain, comfy)
            lat.append((await starts(plain, comfy))[pid] - t0)
        res["direct_submit_to_start_ms"] = summary(lat)
        lat = []
        for _ in range(SEQUENTIAL):
            job, t0 = await v2_submit(api, base)
            await v2_wait(stack, {job}, 0.002)
            [attempt] = stack.ledger_attempts(job)
            lat.append((await starts(plain, comfy))[attempt["prompt_id"]] - t0)
        res["v2_submit_to_start_ms"] = summary(lat)
        done = []
        for _ in range(SEQUENTIAL):
            _pid, t0 = await direct_one(plain, comfy)
            done.append(time.time() - t0)
        res["direct_submit_to_done_ms"] = summary(done)
        done = []
        for _ in range(SEQUENTIAL):
            job, t0 = await v2_submit(api, base)
            await v2_wait(stack, {job}, 0.001)
            done.append(time.time() - t0)
        res["v2_submit_to_done_ms"] = summary(done)

        t0 = time.monotonic()
        pids = await asyncio.gather(*[submit_direct(plain, comfy) for _ in range(AT_ONCE)])
        await history_wait(plain, comfy, set(pids), 0.005)
        res["direct_at_once_jobs_per_s"] = AT_ONCE / (time.monotonic() - t0)
        t0 = time.monotonic()
        ids = await asyncio.gather(*[v2_submit(api, base) for _ in range(AT_ONCE)])
        await v2_wait(stack, {i for i, _t in ids}, 0.005)
        res["v2_at_once_jobs_per_s"] = AT_ONCE / (time.monotonic() - t0)

        t0 = time.monotonic()
        pids = await bounded(BURST, lambda: submit_direct(plain, comfy))
        await history_wait(plain, comfy, set(pids), 0.02)
        res["direct_jobs_per_s"] = BURST / (time.monotonic() - t0)
        t0 = time.monotonic()
        ids = await bounded(BURST, lambda: v2_submit(api, base))
        await v2_wait(stack, {i for i, _t in ids}, 0.02)
        res["v2_jobs_per_s"] = BURST / (time.monotonic() - t0)
    return res


async def gaps(stack: JobsStack) -> dict:
    """GAP_JOBS jobs at once, direct and through v2, on a stand-in whose runs take GAP_JOB_S:
    the stand-in's idle time between one run's end and the next one's start."""
    comfy, base = f"http://127.0.0.1:{stack.comfy_port}", stack.url()
    res: dict = {}
    async with (
        aiohttp.ClientSession() as plain,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {stack.token}"}) as api,
    ):
        job, _t = await v2_submit(api, base)  # warm the path
        await v2_wait(stack, {job}, 0.01)
        pids = set(await asyncio.gather(*[submit_direct(plain, comfy) for _ in range(GAP_JOBS)]))
        await history_wait(plain, comfy, pids, 0.02)
        res["direct_gap_ms"] = summary(run_gaps(await runs_of(plain, comfy), pids))
        ids = await asyncio.gather(*[v2_submit(api, base) for _ in range(GAP_JOBS)])
        await v2_wait(stack, {i for i, _t in ids}, 0.02)
        pids = {stack.ledger_attempts(i)[-1]["prompt_id"] for i, _t in ids}
        res["v2_gap_ms"] = summary(run_gaps(await runs_of(plain, comfy), pids))
    return res


async def runs_of(session, comfy: str) -> list:
    async with session.get(comfy + "/_test/runs") as r:
        return await r.json()


def run_gaps(runs: list, pids: set[str]) -> list[float]:
    mine = sorted((began, ended) for pid, began, ended in runs if pid in pids)
    return [b[0] - a[1] for a, b in zip(mine, mine[1:], strict=False)]


def summary(seconds: list[float]) -> dict:
    ms = sorted(s * 1000 for s in seconds)
    return {"p50": statistics.median(ms), "p90": ms[int(len(ms) * 0.9) - 1], "mean": statistics.fmean(ms)}


async def ledger_cycles(tmp: Path) -> float:
    led = SqlLedger(f"sqlite:///{tmp}/bench-ledger.db")
    t0 = time.monotonic()
    for i in range(LEDGER_CYCLES):
        await led.create_job(f"job_{i}", GRAPH, None, None, None, 0, 3600)
        job = await led.claim("bench", 30, f"p{i}")  # with its first attempt, as the worker claims
        await led.finish(job.id, "bench", "succeeded", None, None, (f"p{i}", "succeeded", "{}"))
    rate = LEDGER_CYCLES / (time.monotonic() - t0)
    await led.close()
    return rate


def main() -> int:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp:
        stack = JobsStack(
            Path(tmp) / "stack", COMFY_QUEUE_LIMIT="0", COMFY_JOBS_MAX_WAITING_PER_USER="0"
        ).start()
        try:
            res = asyncio.run(measure(stack))
        finally:
            stack.stop()
        stack = JobsStack(
            Path(tmp) / "gap", GAP_JOB_S, COMFY_QUEUE_LIMIT="0", COMFY_JOBS_MAX_WAITING_PER_USER="0"
        ).start()
        try:
            res |= asyncio.run(gaps(stack))
        finally:
            stack.stop()
        res["ledger_cycles_per_s"] = asyncio.run(ledger_cycles(Path(tmp)))
    res["load_average"] = {"before": load_before, "after": os.getloadavg(), "cpus": os.cpu_count()}
    d, v = res["direct_submit_to_start_ms"], res["v2_submit_to_start_ms"]
    res["ratios"] = {
        "v2_over_direct_start_p50": v["p50"] / d["p50"],
        "v2_added_start_ms_p50": v["p50"] - d["p50"],
        "v2_over_direct_throughput": res["v2_jobs_per_s"] / res["direct_jobs_per_s"],
        "v2_added_done_ms_p50": res["v2_submit_to_done_ms"]["p50"] - res["direct_submit_to_done_ms"]["p50"],
        "v2_over_direct_at_once": res["v2_at_once_jobs_per_s"] / res["direct_at_once_jobs_per_s"],
        "v2_gap_ms_p50": res["v2_gap_ms"]["p50"],
    }
    dd, vd = res["direct_submit_to_done_ms"], res["v2_submit_to_done_ms"]
    dg, vg = res["direct_gap_ms"], res["v2_gap_ms"]
    rows = [
        ("submit-to-start p50 ms", d["p50"], v["p50"]),
        ("submit-to-start p90 ms", d["p90"], v["p90"]),
        ("submit-to-done p50 ms", dd["p50"], vd["p50"]),
        ("submit-to-done p90 ms", dd["p90"], vd["p90"]),
        (f"jobs/s, {AT_ONCE} at once", res["direct_at_once_jobs_per_s"], res["v2_at_once_jobs_per_s"]),
        (f"jobs/s, {BURST} ({CONCURRENCY} at a time)", res["direct_jobs_per_s"], res["v2_jobs_per_s"]),
        (f"gap between runs p50 ms ({GAP_JOB_S} s jobs)", dg["p50"], vg["p50"]),
        (f"gap between runs p90 ms ({GAP_JOB_S} s jobs)", dg["p90"], vg["p90"]),
    ]
    print(f"{'':40}{'direct /prompt':>16}{'v2 (ledger)':>14}{'ratio':>8}")
    for name, a, b in rows:
        print(f"{name:40}{a:16.2f}{b:14.2f}{b / a if a else float('inf'):8.2f}")
    print(f"v2 added per job, p50: {vd['p50'] - dd['p50']:.2f} ms (submit to done)")
    print(
        f"ledger alone: {res['ledger_cycles_per_s']:.0f} jobs/s (create, claim with attempt, finish; SQLite, "
        "the job's creation and end fsynced)"
    )
    print(
        f"load average {load_before[0]:.1f} before, {res['load_average']['after'][0]:.1f} after, on "
        f"{os.cpu_count()} CPUs (a shared machine makes these noisy)"
    )
    save("jobs", res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
