"""Benchmark: the v2 API over many workers, with PostgreSQL as the ledger.

A real PostgreSQL (Debian's initdb/pg_ctl, in a temp dir), one gateway (the proxy, no
worker) and 1, 2, 3 workers (`python -m comfy_jobs worker`), each beside a ComfyUI stand-in
whose every job takes JOB_S seconds (tests/support/cluster.py), all processes on loopback,
assets on one shared directory (as Compose's scale profile shares a volume). Measured:
  scaling: BATCH jobs submitted at once to 1, 2 and 3 workers, until the last succeeded;
    throughput against the ideal (workers / JOB_S): the scaling efficiency; and on each
    worker's stand-in, its own clock (/_test/runs), the gap between one run's end and the next
    one's start while jobs wait (ComfyUI's own queue gives about none);
  dispatch: one job at a time (stand-ins that take no time), from the client's POST to the
    stand-in starting the run, through the gateway and a worker in another process,
    against the same client posting /prompt to the stand-in directly (the reference), and
    from the POST until the ledger says succeeded, against /history on the stand-in;
  ledger alone: create -> claim (with the attempt) -> finish cycles, SQLite and PostgreSQL,
    against the same three transactions as plain SQL through the drivers (sqlite3 and psycopg) with
    the same fsyncs: what the ledger's own code costs.
Prints a table with ratios and writes bench/results/scale.json. `python -m bench.scale`
(part of `make bench`). The load average is recorded beside the timings.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

from bench import save
from comfy_jobs.sqlledger import SqlLedger
from tests.support.cluster import Cluster
from tests.support.postgres import start_postgres

JOB_S = 0.5
BATCH = 18
SEQUENTIAL = 30
CYCLES = 300
GRAPH = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "4": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bench/s"}},
}


def statuses(cluster: Cluster, ids: set[str]) -> dict[str, str]:
    return {i: s for i, s in cluster.sql("SELECT id, status FROM jobs") if i in ids}


async def submit(api: aiohttp.ClientSession, base: str) -> tuple[str, float]:
    t0 = time.time()
    async with api.post(
        base + "/api/v2/jobs", json={"workflow": GRAPH}, headers={"Idempotency-Key": str(uuid.uuid4())}
    ) as r:
        assert r.status == 201, await r.text()
        return (await r.json())["id"], t0


async def wait_done(cluster: Cluster, ids: set[str], interval: float = 0.01) -> float:
    while True:
        done = statuses(cluster, ids)
        if len(done) == len(ids) and all(s in ("succeeded", "failed") for s in done.values()):
            assert set(done.values()) == {"succeeded"}, done
            return time.time()
        await asyncio.sleep(interval)


async def scaling(pg, tmp: Path) -> dict:
    out = {}
    for n in (1, 2, 3):
        cluster = Cluster(tmp / f"scale{n}", pg.new_database())
        try:
            gateway = cluster.add_gateway()
            workers = [cluster.add_worker(JOB_S) for _ in range(n)]
            base = cluster.url(gateway)
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {cluster.token}"}) as api:
                await wait_done(cluster, {(await submit(api, base))[0]})  # warm every part once
                t0 = time.time()
                ids = await asyncio.gather(*[submit(api, base) for _ in range(BATCH)])
                end = await wait_done(cluster, {i for i, _ in ids})
                gaps: list[float] = []
                for w in workers:  # between runs of the batch only (not the warm-up's)
                    async with api.get(f"http://127.0.0.1:{w.comfy_port}/_test/runs") as r:
                        mine = sorted((b, e) for _p, b, e in await r.json() if b >= t0)
                    gaps += [b[0] - a[1] for a, b in zip(mine, mine[1:], strict=False)]
            rate = BATCH / (end - t0)
            out[n] = {
                "seconds": end - t0,
                "jobs_per_s": rate,
                "ideal_jobs_per_s": n / JOB_S,
                "efficiency": rate / (n / JOB_S),
                "gap_ms": summary(gaps),
            }
        finally:
            cluster.stop()
    return out


async def dispatch(pg, tmp: Path) -> dict:
    cluster = Cluster(tmp / "dispatch", pg.new_database())
    try:
        gateway = cluster.add_gateway()
        worker = cluster.add_worker(0.0)
        comfy, base = f"http://127.0.0.1:{worker.comfy_port}", cluster.url(gateway)
        start_direct, start_v2, done_direct, done_v2 = [], [], [], []
        async with (
            aiohttp.ClientSession() as plain,
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {cluster.token}"}) as api,
        ):
            for i in range(SEQUENTIAL + 3):  # the first three warm both paths
                t0 = time.time()
                async with plain.post(comfy + "/prompt", json={"prompt": GRAPH}) as r:
                    pid = (await r.json())["prompt_id"]
                while True:
                    async with plain.get(f"{comfy}/history/{pid}") as r:
                        if pid in await r.json():
                            break
                    await asyncio.sleep(0.002)
                t_done = time.time()
                starts = cluster.prompts_run(worker)
                if i >= 3:
                    start_direct.append(starts[pid] - t0)
                    done_direct.append(t_done - t0)
                job_id, t0 = await submit(api, base)
                t_done = await wait_done(cluster, {job_id}, 0.002)
                [(prompt_id,)] = cluster.sql("SELECT prompt_id FROM attempts WHERE job_id = %s", job_id)
                if i >= 3:
                    start_v2.append(cluster.prompts_run(worker)[prompt_id] - t0)
                    done_v2.append(t_done - t0)
    finally:
        cluster.stop()
    return {
        "direct_submit_to_start_ms": summary(start_direct),
        "v2_submit_to_start_ms": summary(start_v2),
        "direct_submit_to_done_ms": summary(done_direct),
        "v2_submit_to_done_ms": summary(done_v2),
    }


def summary(seconds: list[float]) -> dict:
    ms = sorted(s * 1000 for s in seconds)
    return {"p50": statistics.median(ms), "p90": ms[int(len(ms) * 0.9) - 1], "mean": statistics.fmean(ms)}


async def ledger_cycles(url: str) -> float:
    led = SqlLedger(url)
    t0 = time.monotonic()
    for i in range(CYCLES):
        await led.create_job(f"job_{i}", GRAPH, None, None, None, 0, 3600)
        job = await led.claim("bench", 30, f"p{i}")  # with its first attempt, as the worker claims
        await led.finish(job.id, "bench", "succeeded", None, None, (f"p{i}", "succeeded", "{}"))
    rate = CYCLES / (time.monotonic() - t0)
    await led.close()
    return rate


def raw_cycles(connect, param: str, durable, ordered) -> float:
    """The same three transactions as plain SQL on one connection, each as durable as the
    ledger makes it (`durable`/`ordered` set the commit's fsync), as a driver's users write it."""
    c = connect()
    c.execute(
        "CREATE TABLE IF NOT EXISTS raw_jobs (seq INTEGER PRIMARY KEY, id TEXT UNIQUE, status TEXT, "
        "workflow TEXT, owner TEXT, lease REAL, attempts INTEGER)"
    )
    c.execute("CREATE TABLE IF NOT EXISTS raw_attempts (job_id TEXT, n INTEGER, prompt_id TEXT)")
    c.commit()
    q = param
    wf = json.dumps(GRAPH)
    t0 = time.monotonic()
    for i in range(CYCLES):
        durable(c)
        c.execute(
            f"INSERT INTO raw_jobs (seq, id, status, workflow, attempts) VALUES ({q}, {q}, 'queued', {q}, 0)",
            (i, f"job_{i}", wf),
        )
        c.commit()
        ordered(c)
        seq = c.execute("SELECT seq FROM raw_jobs WHERE status = 'queued' ORDER BY seq LIMIT 1").fetchone()[0]
        c.execute(
            f"UPDATE raw_jobs SET status = 'running', owner = 'bench', lease = {q} WHERE seq = {q}",
            (time.time() + 30, seq),
        )
        c.execute(f"SELECT workflow FROM raw_jobs WHERE seq = {q}", (seq,)).fetchone()
        c.execute(f"UPDATE raw_jobs SET attempts = attempts + 1 WHERE seq = {q}", (seq,))
        c.execute(f"INSERT INTO raw_attempts VALUES ({q}, 1, {q})", (f"job_{i}", f"p{i}"))
        c.commit()
        durable(c)
        c.execute(f"UPDATE raw_attempts SET n = n WHERE prompt_id = {q}", (f"p{i}",))
        c.execute(f"UPDATE raw_jobs SET status = 'succeeded', owner = NULL WHERE seq = {q}", (seq,))
        c.commit()
    rate = CYCLES / (time.monotonic() - t0)
    c.close()
    return rate


def raw_sqlite(path: Path) -> float:
    import sqlite3

    def connect():
        c = sqlite3.connect(path)
        c.execute("PRAGMA journal_mode=WAL")
        return c

    return raw_cycles(
        connect,
        "?",
        lambda c: c.execute("PRAGMA synchronous=FULL"),
        lambda c: c.execute("PRAGMA synchronous=NORMAL"),
    )


def raw_postgres(url: str) -> float:
    import psycopg

    return raw_cycles(lambda: psycopg.connect(url), "%s", lambda c: None, lambda c: None)


def main() -> int:
    load_before = os.getloadavg()
    res: dict = {"job_seconds": JOB_S, "batch": BATCH}
    pg = start_postgres()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
            res["scaling"] = asyncio.run(scaling(pg, Path(tmp)))
            res["dispatch"] = asyncio.run(dispatch(pg, Path(tmp)))
            res["ledger_jobs_per_s"] = {
                "sqlite": asyncio.run(ledger_cycles(f"sqlite:///{tmp}/ledger.db")),
                "sqlite_raw_driver": raw_sqlite(Path(tmp) / "raw.db"),
                "postgresql": asyncio.run(ledger_cycles(pg.new_database())),
                "postgresql_raw_driver": raw_postgres(pg.new_database()),
            }
    finally:
        pg.stop()
    res["load_average"] = {"before": load_before, "after": os.getloadavg(), "cpus": os.cpu_count()}
    d = res["dispatch"]
    led = res["ledger_jobs_per_s"]
    res["ratios"] = {
        "scaling_efficiency": {n: s["efficiency"] for n, s in res["scaling"].items()},
        "throughput_3_over_1": res["scaling"][3]["jobs_per_s"] / res["scaling"][1]["jobs_per_s"],
        "v2_added_start_ms_p50": d["v2_submit_to_start_ms"]["p50"] - d["direct_submit_to_start_ms"]["p50"],
        "v2_added_done_ms_p50": d["v2_submit_to_done_ms"]["p50"] - d["direct_submit_to_done_ms"]["p50"],
        "v2_over_direct_start_p50": d["v2_submit_to_start_ms"]["p50"] / d["direct_submit_to_start_ms"]["p50"],
        "v2_over_direct_done_p50": d["v2_submit_to_done_ms"]["p50"] / d["direct_submit_to_done_ms"]["p50"],
        "sqlite_ledger_over_raw": led["sqlite"] / led["sqlite_raw_driver"],
        "postgresql_ledger_over_raw": led["postgresql"] / led["postgresql_raw_driver"],
    }
    print(f"scaling: {BATCH} jobs of {JOB_S} s each, submitted at once")
    print(f"{'workers':>8}{'seconds':>10}{'jobs/s':>9}{'ideal':>8}{'efficiency':>12}{'gap p50 ms':>12}")
    for n, s in res["scaling"].items():
        print(
            f"{n:>8}{s['seconds']:>10.2f}{s['jobs_per_s']:>9.2f}{s['ideal_jobs_per_s']:>8.2f}{s['efficiency']:>12.2f}"
            f"{s['gap_ms']['p50']:>12.2f}"
        )
    print(f"\n{'one job at a time, ms':30}{'direct /prompt':>16}{'v2 (gateway)':>14}{'added':>8}{'ratio':>8}")
    for what in ("start", "done"):
        a, b = d[f"direct_submit_to_{what}_ms"], d[f"v2_submit_to_{what}_ms"]
        print(
            f"{'submit-to-' + what + ' p50':30}{a['p50']:16.1f}{b['p50']:14.1f}{b['p50'] - a['p50']:8.1f}"
            f"{b['p50'] / a['p50']:8.1f}"
        )
    print(f"\n{'ledger alone, jobs/s':30}{'ledger':>10}{'raw driver':>12}{'ratio':>8}")
    for db in ("sqlite", "postgresql"):
        print(
            f"{db:30}{led[db]:10.0f}{led[db + '_raw_driver']:12.0f}{led[db] / led[db + '_raw_driver']:8.2f}"
        )
    print(
        f"\nload average {load_before[0]:.1f} before, {res['load_average']['after'][0]:.1f} after, on "
        f"{os.cpu_count()} CPUs (a shared machine makes these noisy)"
    )
    save("scale", res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
