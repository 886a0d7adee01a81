"""A gateway's UI in a cluster: each browser session pinned to one worker.

A gateway (COMFY_JOBS_WORKER=0 with the ledger in PostgreSQL) has no ComfyUI of its own.
The native UI keeps state on one ComfyUI (its queue, history, /view files, the WebSocket's
client id), so every request of one browser session must reach the same worker: the pin
lives in the ledger (the `pins` table), so every gateway replica relays a session to the
same worker, and a session whose worker is gone or draining is pinned anew. The relay goes
to the worker pod's own proxy (COMFY_WORKER_URL), which checks the same credentials (they
live in the same database) before ComfyUI, which listens on its pod's loopback only.
API clients use the v2 job API, which needs no pinning.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from aiohttp import web

from auth_proxy.services import WHO
from comfy_jobs.service import JobsService

LIVE_S = 30.0  # a worker not heard of for this long gets no new pins
CACHE_S = 2.0  # the live workers and each pin, read from the ledger at most this often


@dataclass(frozen=True)
class Target:
    url: str  # the worker's proxy
    worker: str


class Pinning:
    def __init__(self, service: JobsService):
        self.svc = service  # its ledger is opened when the application starts
        self._live: tuple[float, list] = (0.0, [])
        self._pins: dict[str, tuple[float, str | None]] = {}

    async def live(self) -> list:
        now = time.monotonic()
        if now - self._live[0] > CACHE_S:
            found = await self.svc.ledger.workers(LIVE_S)
            self._live = (now, [w for w in found if w.ui_url and not w.draining])
        return self._live[1]

    async def target(self, request: web.Request) -> Target | None:
        """Where this request's session is relayed, or None when no worker can take it."""
        who = request.get(WHO)
        key = (
            hashlib.sha256((who.sid or f"{who.via}:{who.user}").encode()).hexdigest() if who else "anonymous"
        )
        live = await self.live()
        by_id = {w.id: w for w in live}
        now = time.monotonic()
        cached = self._pins.get(key)
        if cached and now - cached[0] < CACHE_S and cached[1] in by_id:
            worker = cached[1]
        else:
            worker = await self.svc.ledger.pin(key, live)
            self._pins[key] = (now, worker)
            if len(self._pins) > 10000:  # forget old entries; the ledger keeps the pins
                self._pins = {k: v for k, v in self._pins.items() if now - v[0] < CACHE_S}
        return Target(by_id[worker].ui_url, worker) if worker is not None and worker in by_id else None


PINNING = web.AppKey("pinning", Pinning)  # on a cluster's gateway only
