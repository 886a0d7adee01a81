"""`python -m comfy_jobs worker`: a worker on its own, beside a ComfyUI, without the proxy.

It claims jobs from the ledger (COMFY_JOBS_DATABASE_URL: the cluster's PostgreSQL), runs
them on COMFY_WORKER_COMFYUI_URL, and stores their outputs as assets (COMFY_OUTPUTS_TO in a
cluster, so that every gateway can serve them). SIGTERM or SIGINT drains: no new job is
claimed, the job in hand finishes, then the program exits 0; a second signal stops at once
(the lease is given back and another worker resumes the job). Exit codes: comfy_jobs/errors.py.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from dataclasses import replace

from comfy_jobs.errors import JobsError
from comfy_jobs.service import JobsService
from comfy_jobs.settings import load_settings


async def serve_worker() -> int:
    settings = replace(load_settings(), run_worker=True)
    svc = JobsService(settings, settings.comfyui_url)
    await svc.start()
    worker = svc.start_worker()
    assert worker.task is not None
    running = worker.task
    signals = asyncio.Queue[int]()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signals.put_nowait, sig)
    log = logging.getLogger("comfy_jobs.worker")
    log.info("worker %s: running jobs on %s", settings.worker_id, settings.comfyui_url)
    try:
        waiting = asyncio.create_task(signals.get())
        await asyncio.wait([waiting, running], return_when=asyncio.FIRST_COMPLETED)
        if waiting.done():
            log.info(
                "worker %s: draining (the job in hand finishes; a second signal stops now)",
                settings.worker_id,
            )
            drain = asyncio.create_task(worker.stop(drain=True))
            second = asyncio.create_task(signals.get())
            await asyncio.wait([drain, second], return_when=asyncio.FIRST_COMPLETED)
            if not drain.done():
                log.warning(
                    "worker %s: stopping now; the job in hand goes back to the queue", settings.worker_id
                )
                await worker.stop()
            second.cancel()
        else:  # the worker ended by itself: a bug, logged where it happened
            waiting.cancel()
            return 1
    finally:
        await svc.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m comfy_jobs", description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["worker"], help="run a worker beside a ComfyUI")
    p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(serve_worker())
    except JobsError as exc:
        print(f"comfy_jobs: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
