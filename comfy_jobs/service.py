"""Everything the v2 API needs from comfy_jobs, started and stopped as one: the ledger, the
blob store (and its object-storage mirror), the live-event hub, the in-process worker and
the webhook sender."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import aiohttp

from comfy_jobs.blobs import BlobStore
from comfy_jobs.comfy import ComfyUI, Unreachable
from comfy_jobs.events import Hub
from comfy_jobs.ledger import Ledger, open_ledger
from comfy_jobs.metrics import JobMetrics
from comfy_jobs.outputs import Files
from comfy_jobs.settings import JobSettings
from comfy_jobs.webhooks import Sender
from comfy_jobs.worker import Worker

log = logging.getLogger(__name__)
OBJECT_INFO_TTL_S = 60.0


class JobsService:
    def __init__(self, settings: JobSettings, comfy_url: str):
        self.s = settings
        self.comfy_url = comfy_url
        self.hub = Hub()
        self.metrics = JobMetrics()
        # made by start(), which opens the ledger (a file, or a database connection)
        self.ledger: Ledger
        self.blobs: BlobStore
        self.files: Files
        self.session: aiohttp.ClientSession
        self.worker: Worker | None = None
        self.sender: Sender | None = None
        self._tasks: list[asyncio.Task] = []
        self._classes: tuple[float, set[str]] | None = None
        self._started = False

    async def start(self) -> None:
        self.ledger = open_ledger(self.s.db_url, webhooks=bool(self.s.webhook_url))
        self._started = True
        mirror = None
        if self.s.outputs_to:
            from comfy_jobs.objstore import Mirror

            mirror = Mirror(self.s.outputs_to, self.s.jobs_dir, self.s.storage)
        self.blobs = BlobStore(self.s.blobs_dir, mirror)
        self.files = Files(self.ledger, self.blobs, self.hub, mirror)
        self.session = aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(), connector=aiohttp.TCPConnector(limit=0)
        )
        if self.s.run_worker:
            self.worker = Worker(
                self.ledger, self.s, self.comfy_url, self.session, self.files, self.hub, self.metrics
            )
            self.worker.start()
        if self.s.webhook_url:
            self.sender = Sender(
                self.ledger, self.s.webhook_url, self.s.webhook_secret, self.session, self.metrics
            )
            self._tasks.append(asyncio.create_task(self.sender.run(), name="webhooks"))
        log.info(
            "v2 jobs: ledger %s, worker %s",
            self.s.db_url.split("://")[0],
            self.s.worker_id if self.worker else "elsewhere (COMFY_JOBS_WORKER=0)",
        )

    async def stop(self) -> None:
        if self.worker:
            await self.worker.stop()
        for t in self._tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self._started:
            await self.session.close()
            await self.ledger.close()

    def submitted(self) -> None:
        if self.worker:
            self.worker.wake()

    def cancel_requested(self, job_id: str) -> None:
        if self.worker:
            self.worker.cancel_now(job_id)

    async def known_classes(self) -> set[str] | None:
        """ComfyUI's node classes (cached a minute), or None when it cannot be asked: a job
        is still accepted then, and ComfyUI's own check runs when the worker submits it."""
        if not self.s.run_worker and self.s.database_url:
            # A cluster's gateway has no ComfyUI: the worker's ComfyUI checks the classes when
            # it is submitted there, and a job it rejects fails with invalid_workflow.
            return None
        now = time.monotonic()
        if self._classes and now - self._classes[0] < OBJECT_INFO_TTL_S:
            return self._classes[1]
        try:
            info = await ComfyUI(self.comfy_url, self.session).object_info()
        except Unreachable:
            return None
        self._classes = (now, set(info))
        return self._classes[1]

    def mirror_failures(self) -> int:
        return self.files.mirror.failures if self._started and self.files.mirror else 0
