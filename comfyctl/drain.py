"""`comfyctl drain`: wait until ComfyUI's queue is empty, for a Kubernetes preStop hook.

It runs inside the container and asks ComfyUI on loopback (no login there), so a job
that is running when the pod is asked to stop can finish. It never fails the hook: a
preStop that exits non-zero only produces an event, and one that never returns holds the
pod until terminationGracePeriodSeconds, so every way out is exit 0 with a log line.

With the v2 job worker (a cluster's worker pod, or one box's proxy), it first tells the
worker through the ledger to stop claiming (COMFY_JOBS_DATABASE_URL, or the SQLite ledger in
COMFY_JOBS_DIR; the worker's name is COMFY_JOBS_WORKER_ID, by default the host name, which
is the pod's name) and waits for the job in hand to finish; queued jobs stay for the other
workers (or for this box's next start).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8189"


@dataclass(frozen=True)
class QueueState:
    running: int
    pending: int

    @property
    def empty(self) -> bool:
        return self.running == 0 and self.pending == 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default=DEFAULT_URL, help=f"ComfyUI's own address, not the proxy's (default {DEFAULT_URL})"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="give up waiting after this many seconds (default 600); keep it "
        "below the pod's terminationGracePeriodSeconds",
    )
    parser.add_argument(
        "--interval", type=float, default=2.0, help="seconds between looks at the queue (default 2)"
    )


def read_queue(url: str, timeout: float = 5.0) -> QueueState:
    with urllib.request.urlopen(url.rstrip("/") + "/queue", timeout=timeout) as resp:
        body = json.load(resp)
    return QueueState(
        running=len(body.get("queue_running") or []), pending=len(body.get("queue_pending") or [])
    )


def drain(url: str, timeout: float, interval: float) -> str:
    """Wait for an empty queue; returns why it stopped: 'idle', 'unreachable' or 'timeout'."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = read_queue(url, timeout=min(5.0, max(timeout, 0.1)))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            # Already stopped (or never started): there is no job to wait for.
            log.info("ComfyUI at %s does not answer (%s); nothing to drain", url, exc)
            return "unreachable"
        if state.empty:
            log.info("ComfyUI's queue is empty; stopping")
            return "idle"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            log.warning(
                "still %d running and %d pending after %.0f s; stopping anyway",
                state.running,
                state.pending,
                timeout,
            )
            return "timeout"
        log.info(
            "waiting for ComfyUI's queue to empty: %d running, %d pending (%.0f s left)",
            state.running,
            state.pending,
            remaining,
        )
        time.sleep(min(interval, remaining))


def drain_worker(timeout: float, interval: float) -> str:
    """Ask this host's job worker to drain and wait until it holds no job: 'idle',
    'no-worker' (no ledger, or no such worker) or 'timeout'."""
    import asyncio

    from comfy_jobs.errors import JobsError
    from comfy_jobs.ledger import open_ledger
    from comfy_jobs.settings import load_settings

    try:
        settings = load_settings()
    except JobsError as exc:
        log.warning("not draining the job worker: %s", exc)
        return "no-worker"
    if not settings.database_url and not (settings.jobs_dir / "ledger.db").is_file():
        return "no-worker"

    async def run() -> str:
        try:
            ledger = open_ledger(settings.db_url)
        except JobsError as exc:
            log.warning("not draining the job worker: %s", exc)
            return "no-worker"
        try:
            if not await ledger.request_drain(settings.worker_id):
                log.info("no job worker %r in the ledger; nothing to drain", settings.worker_id)
                return "no-worker"
            deadline = time.monotonic() + timeout
            while True:
                w = await ledger.worker(settings.worker_id)
                if w is None or w.job_id is None:
                    log.info("job worker %s claims no more jobs and holds none", settings.worker_id)
                    return "idle"
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.warning(
                        "job worker %s still runs job %s after %.0f s; stopping anyway (another "
                        "worker resumes it when the lease runs out)",
                        settings.worker_id,
                        w.job_id,
                        timeout,
                    )
                    return "timeout"
                log.info(
                    "waiting for job worker %s to finish job %s (%.0f s left)",
                    settings.worker_id,
                    w.job_id,
                    remaining,
                )
                await asyncio.sleep(min(interval, remaining))
        finally:
            await ledger.close()

    return asyncio.run(run())


def main(args: argparse.Namespace) -> int:
    started = time.monotonic()
    drain_worker(args.timeout, args.interval)
    drain(args.url, max(0.0, args.timeout - (time.monotonic() - started)), args.interval)
    return 0
