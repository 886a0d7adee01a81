"""In-process wake-ups for the SSE streams, and the one thing the ledger does not keep:
the latest live preview of each running job (the contract keeps only the most recent)."""

from __future__ import annotations

import asyncio
import base64
import contextlib


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
