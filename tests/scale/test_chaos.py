"""Nothing lost, nothing run twice after success, over a cluster that keeps failing: 60 jobs
submitted through the official comfy-sdk to two gateway replicas, three workers (stand-ins
that take seconds per job), workers killed with kill -9 at random moments (alone, or with
their ComfyUI, as a pod dies), and one gateway replica killed and restarted meanwhile."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
from blake3 import blake3

from tests.support import wait_until

comfy_sdk = pytest.importorskip("comfy_sdk")
httpx = pytest.importorskip("httpx")

JOBS = 60
JOB_SECONDS = 1.5
MAX_KILLS = 5
CHAOS_FOR_S = 60.0
BOUND_S = 240.0  # the whole run, submissions to the last verified download


def graph(i: int) -> dict:
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8 + i % 5, "height": 8, "batch_size": 1, "color": i},
        },
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": f"chaos/j{i}"}},
    }


def sdk(cluster, gateway, monkeypatch):
    """A client of one gateway (comfy-sdk reads its server from COMFY_BASE_URL when made)."""
    monkeypatch.setenv("COMFY_BASE_URL", cluster.url(gateway))
    return comfy_sdk.Comfy(api_key=cluster.token)


class Chaos(threading.Thread):
    """kill -9 a random worker (and, every other time, its ComfyUI too) at random moments,
    then start it again; and kill and restart one gateway; bounded in count and time."""

    def __init__(self, cluster, seed: int):
        super().__init__(daemon=True)
        self.cluster, self.rng = cluster, random.Random(seed)
        self.done = threading.Event()
        self.kills: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            deadline = time.monotonic() + CHAOS_FOR_S
            while len(self.kills) < MAX_KILLS and time.monotonic() < deadline and not self.done.is_set():
                time.sleep(self.rng.uniform(1.0, 4.0))
                node = self.rng.choice(self.cluster.workers)
                pod = len(self.kills) % 2 == 1
                node.proc.kill9()
                if pod:
                    node.comfy.kill9()
                self.kills.append(f"{node.name}{' and its ComfyUI' if pod else ''}")
                time.sleep(self.rng.uniform(0.2, 1.5))
                self.cluster.start(node)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def test_sixty_jobs_through_kills_and_a_gateway_restart(cluster, tmp_path, monkeypatch):
    seed = random.randrange(1 << 30)
    print(f"chaos seed {seed}")
    g0, g1 = cluster.add_gateway(), cluster.add_gateway()
    for _ in range(3):
        cluster.add_worker(JOB_SECONDS, COMFY_JOB_MAX_ATTEMPTS="20")
    started = time.monotonic()
    chaos = Chaos(cluster, seed)
    chaos.start()
    ids: list[str] = []
    with sdk(cluster, g0, monkeypatch) as c0, sdk(cluster, g1, monkeypatch) as c1:
        for i in range(JOBS):
            if i == JOBS // 2:  # a gateway replica dies and comes back while jobs flow
                g1.proc.kill9()
            if i == JOBS // 2 + 5:
                cluster.start(g1)
            key = f"chaos-{seed}-{i}"
            wf = c0.workflows.from_json(graph(i))
            try:
                job = (c1 if i % 2 else c0).submit(wf, idempotency_key=key)
            except httpx.ConnectError:  # never delivered: the same key through the other replica
                job = c0.submit(wf, idempotency_key=key)
            ids.append(job.id)
        assert len(set(ids)) == JOBS
        jobs = [c0.jobs.get(i) for i in ids]
        for job in jobs:
            job.wait(timeout=max(1.0, BOUND_S - (time.monotonic() - started)))
        chaos.done.set()
        chaos.join(timeout=30)
        assert chaos.error is None, chaos.error
        print(f"killed: {', '.join(chaos.kills)}")
        assert [j.status for j in jobs] == ["succeeded"] * JOBS
        # Every output, through the restarted replica (which fetches it from object storage)
        for n, job in enumerate(jobs):
            [out] = c1.jobs.get(job.id).get_outputs("2")
            path = out.to_file(tmp_path / f"out{n}.png")
            data = Path(path).read_bytes()
            assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) == out.size_bytes
            [(digest,)] = cluster.sql("SELECT hash FROM assets WHERE id = %s", out.id)
            assert "blake3:" + blake3(data).hexdigest() == digest
            # the very bytes the ComfyUI that ran it saved
            saved = [
                f for w in cluster.workers for f in (cluster.base / f"{w.name}-comfy/output").rglob(out.name)
            ]
            assert saved and all(f.read_bytes() == data for f in saved), out.name
    assert time.monotonic() - started < BOUND_S
    # Exactly once: one successful attempt per job, and none after it; attempts counted.
    for job_id in ids:
        rows = cluster.sql("SELECT n, outcome FROM attempts WHERE job_id = %s ORDER BY n", job_id)
        outcomes = [o for _, o in rows]
        assert outcomes.count("succeeded") == 1 and outcomes[-1] == "succeeded", (job_id, rows)
        [(attempts,)] = cluster.sql("SELECT attempts FROM jobs WHERE id = %s", job_id)
        assert attempts == len(rows)
    assert chaos.kills, "the chaos thread killed nothing"
    wait_until(
        lambda: cluster.sql("SELECT count(*) FROM jobs WHERE status <> 'succeeded'") == [(0,)],
        timeout=5,
        what="no other job",
    )
