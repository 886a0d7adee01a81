"""What a worker tells the others about itself, mixed into comfy_jobs.worker.Worker: its row
in the ledger (the models on its disk, the models of its last job, the job in hand, its
proxy's address), read back for a drain request; and its pod's deletion cost."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from comfy_jobs.model import WorkerInfo
from comfy_jobs.report import placed_models

log = logging.getLogger("comfy_jobs.worker")


class Presence:
    # the Worker's
    id: str
    s: Any  # JobSettings
    ledger: Any  # comfy_jobs.ledger.Ledger
    loaded: list[str]
    draining: bool
    current: Any  # worker.Held | None
    cost: Any  # podcost.PodCost | None
    _wake: asyncio.Event

    def info(self) -> WorkerInfo:
        models = placed_models(self.s.models_dir) if self.s.models_dir else None
        return WorkerInfo(
            self.id,
            self.s.worker_url or None,
            models,
            self.loaded,
            self.current.job.id if self.current else None,
        )

    async def report(self, starting: bool = False) -> None:
        """Write this worker's row; learn whether it was asked to drain."""
        try:
            if await self.ledger.worker_beat(self.info(), starting) and not self.draining:
                log.info("worker %s: asked to drain; no new job is claimed", self.id)
                self.draining = True
        except Exception as exc:  # noqa: BLE001 - a database hiccup; the next report retries
            log.warning("worker %s: could not report to the ledger: %s", self.id, exc)

    async def _reports(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, self.s.lease_s / 3))
            await self.report()

    async def _notices(self) -> None:
        """Jobs submitted through another process (a gateway) wake this worker at once."""
        while True:
            await self.ledger.wait_for_work(30.0)
            self._wake.set()

    async def _pod_cost(self, busy: bool) -> None:
        if self.cost is not None:
            await self.cost.set(busy)
