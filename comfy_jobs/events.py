"""A job's live events, as the v2 SSE stream sends them: a snapshot on connect (status,
latest progress, latest preview), then each change, until the job ends. Changes are read
from the ledger, so a job run by another process streams too; the hub wakes a stream early
for changes made in this process and holds the one thing the ledger does not keep: the
latest live preview of each running job (the contract keeps only the most recent)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from comfy_jobs.model import TERMINAL, Job, Output

KEEPALIVE_S = 15.0
RECHECK_S = 1.0  # how often a stream looks at the ledger without a wake-up from this process


@dataclass(frozen=True)
class Event:
    """`kind`: status, progress, preview, output (data: an Output) or keepalive."""

    kind: str
    data: dict | Output | None = None


class Hub:
    def __init__(self) -> None:
        self._waiters: dict[str, asyncio.Event] = {}
        self.previews: dict[str, tuple[int, dict]] = {}
        self._n = 0

    def notify(self, job_id: str) -> None:
        ev = self._waiters.pop(job_id, None)
        if ev is not None:
            ev.set()

    async def wait(self, job_id: str, timeout: float) -> None:
        """Until something happened to the job here, or `timeout` (then the caller re-reads
        the ledger, which also catches changes made by other processes)."""
        ev = self._waiters.setdefault(job_id, asyncio.Event())
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(ev.wait(), timeout)

    def preview(self, job_id: str, node_id: str | None, content_type: str, data: bytes) -> None:
        self._n += 1
        self.previews[job_id] = (
            self._n,
            {
                "node_id": node_id or "",
                "content_type": content_type,
                "data_base64": base64.b64encode(data).decode(),
            },
        )
        self.notify(job_id)

    def finished(self, job_id: str) -> None:
        self.previews.pop(job_id, None)
        self.notify(job_id)


def _status(job: Job) -> Event:
    return Event("status", {"status": job.status, "queue_position": job.queue_position})


async def follow(job: Job, read: Callable[[str], Awaitable[Job]], hub: Hub) -> AsyncIterator[Event]:
    """The events of `job` (as just read) until it ends; `read` reads it again."""
    yield _status(job)
    last_status, last_progress = (job.status, job.queue_position), job.progress
    if job.progress:
        yield Event("progress", job.progress)
    preview_n = 0
    if job.id in hub.previews:
        preview_n, preview = hub.previews[job.id]
        yield Event("preview", preview)
    sent = {(o.node_id, o.name) for o in job.outputs}
    last_event = time.monotonic()
    while job.status not in TERMINAL:
        await hub.wait(job.id, RECHECK_S)
        job = await read(job.id)
        events: list[Event] = [Event("output", o) for o in job.outputs if (o.node_id, o.name) not in sent]
        sent |= {(o.node_id, o.name) for o in job.outputs}
        if job.progress != last_progress and job.progress:
            last_progress = job.progress
            events.append(Event("progress", job.progress))
        if job.id in hub.previews and hub.previews[job.id][0] != preview_n:
            preview_n, preview = hub.previews[job.id]
            events.append(Event("preview", preview))
        if (job.status, job.queue_position) != last_status:
            last_status = (job.status, job.queue_position)
            events.append(_status(job))
        if not events and time.monotonic() - last_event > KEEPALIVE_S:
            events.append(Event("keepalive"))
        for event in events:
            yield event
        if events:
            last_event = time.monotonic()
