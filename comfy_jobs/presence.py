"""What a worker tells the others about itself: its row in the ledger (the models on its
disk, the models of its last job, the job in hand, its proxy's address), written on every
beat and read back for a drain request; and its pod's deletion cost."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from comfy_jobs.ledger import Ledger
from comfy_jobs.model import WorkerInfo
from comfy_jobs.models_on_disk import placed_models
from comfy_jobs.podcost import PodCost
from comfy_jobs.settings import JobSettings

log = logging.getLogger("comfy_jobs.worker")


class Presence:
    def __init__(
        self,
        ledger: Ledger,
        settings: JobSettings,
        holding: Callable[[], Iterable[str]],
        cost: PodCost | None,
    ):
        self.ledger, self.s, self.cost = ledger, settings, cost
        self.id = settings.worker_id
        self.holding = holding  # the ids of the jobs the worker holds now, in the order claimed
        self.loaded: list[str] = []  # the models of the job run last (what ComfyUI holds)
        self.draining = False
        # One write of the row at a time, each made from what the worker holds when it is
        # written: a beat read before a job's end must not land after that end (whose
        # transaction wrote the row too) and show the worker busy with a job that has ended.
        self.writing = asyncio.Lock()

    def info(self) -> WorkerInfo:
        models = placed_models(self.s.models_dir) if self.s.models_dir else None
        return WorkerInfo(
            self.id, self.s.worker_url or None, models, self.loaded, next(iter(self.holding()), None)
        )

    async def report(self, starting: bool = False) -> None:
        """Write this worker's row; learn whether it was asked to drain."""
        try:
            async with self.writing:
                asked = await self.ledger.worker_beat(self.info(), starting)
            if asked and not self.draining:
                log.info("worker %s: asked to drain; no new job is claimed", self.id)
                self.draining = True
        except Exception as exc:  # noqa: BLE001 - a database hiccup; the next report retries
            log.warning("worker %s: could not report to the ledger: %s", self.id, exc)

    async def reports(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, self.s.lease_s / 3))
            await self.report()

    async def busy(self, busy: bool) -> None:
        """The pod's deletion cost: a busy worker's pod is the last a scale-down removes."""
        if self.cost is not None:
            await self.cost.set(busy)
