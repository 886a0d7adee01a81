"""A job's live events, as the v2 SSE stream sends them: a snapshot on connect (status,
latest progress, latest preview), then each change, until the job ends.

A stream reads its job again only when something changed: the worker in this process says
so at once (`Hub.notify`), and one watch per process (`Hub.watch`) reads a fingerprint of
every streamed job from the ledger in one query a second, which catches what other
processes (a cluster's workers) changed. So an open stream costs nothing while its job
stands still, and the number open is bounded per client and in all (`Streams`). The hub
also holds the one thing the ledger does not keep: the latest live preview of each running
job (the contract keeps only the most recent)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

from comfy_jobs.errors import Busy
from comfy_jobs.model import TERMINAL, Job, Output

log = logging.getLogger(__name__)

KEEPALIVE_S = 15.0
WATCH_S = 1.0  # how often the streamed jobs' fingerprints are read from the ledger
MAX_STREAMS = 256  # open event streams per process
MAX_STREAMS_PER_CLIENT = 16  # per credential (a token, a browser session)


@dataclass(frozen=True)
class Event:
    """`kind`: status, progress, preview, output (data: an Output) or keepalive."""

    kind: str
    data: dict | Output | None = None


class Streams:
    """The event streams open now, per client: each is a task and a connection held open."""

    def __init__(self, total: int = MAX_STREAMS, per_client: int = MAX_STREAMS_PER_CLIENT):
        self.total, self.per_client = total, per_client
        self.open: Counter[str] = Counter()

    @contextlib.contextmanager
    def slot(self, client: str) -> Iterator[None]:
        if self.open[client] >= self.per_client or sum(self.open.values()) >= self.total:
            raise Busy(
                "too_many_streams",
                f"{self.open[client]} event streams are open for these credentials (at most "
                f"{self.per_client}, {self.total} in all); close one, or poll GET /api/v2/jobs/{{id}}",
            )
        self.open[client] += 1
        try:
            yield
        finally:
            self.open[client] -= 1
            if not self.open[client]:
                del self.open[client]


class Hub:
    def __init__(self) -> None:
        self._waiters: dict[str, asyncio.Event] = {}
        self.previews: dict[str, tuple[int, dict]] = {}
        self.streams = Streams()
        self._n = 0

    async def watch(self, fingerprints: Callable[[list[str]], Awaitable[dict[str, tuple]]]) -> None:
        """Wake the streams whose job changed anywhere: one ledger read a second for all
        of them, none while no stream is open."""
        seen: dict[str, tuple] = {}
        while True:
            await asyncio.sleep(WATCH_S)
            watched = list(self._waiters)
            if not watched:
                seen.clear()
                continue
            try:
                now = await fingerprints(watched)
            except Exception as exc:  # noqa: BLE001 - a database hiccup; the next look retries
                log.warning("reading the streamed jobs from the ledger failed: %s", exc)
                continue
            for job_id in watched:
                if job_id not in seen or now.get(job_id) != seen[job_id]:
                    self.notify(job_id)  # a stream new since the last look reads once, too
            seen = {job_id: now[job_id] for job_id in watched if job_id in now}

    def notify(self, job_id: str) -> None:
        ev = self._waiters.pop(job_id, None)
        if ev is not None:
            ev.set()

    async def wait(self, job_id: str, timeout: float) -> bool:
        """Until the job changed (here, or anywhere as `watch` sees it): True; or `timeout`."""
        ev = self._waiters.setdefault(job_id, asyncio.Event())
        try:
            await asyncio.wait_for(ev.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

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
    while job.status not in TERMINAL:
        if not await hub.wait(job.id, KEEPALIVE_S):
            yield Event("keepalive")
            continue
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
        for event in events:
            yield event
