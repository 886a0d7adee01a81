"""The job service: what the v2 API does, whichever transport carries it. It owns the
rules (a body is checked, an Idempotency-Key replays or refuses, a full queue says when to
come back, a list is filtered and paged by the database) and the parts they need: the
ledger, the blob store and its object-storage mirror, the live-event hub and the webhook
sender; the worker beside a ComfyUI is started by whoever runs one (the proxy's app factory
on one box, `python -m comfy_jobs worker` in a cluster).

Every call says who asks (model.Caller): a member submits, lists, reads, follows and
cancels only their own jobs and uses only their own assets; another's job or asset is
`NotFound` exactly as a missing one is (the ledger filters by owner in SQL), so no answer
tells that it exists. An admin reaches everyone's. Each account may have a number of jobs
waiting to start (COMFY_JOBS_MAX_WAITING_PER_USER, or what `limit_for` says for it).

Refusals are raised as comfy_jobs.errors.Refused kinds, in the contract's codes; the HTTP
adapters (auth_proxy/v2/) only read requests and write answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import logging
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Callable

import aiohttp

from comfy_jobs import member_policy
from comfy_jobs.assets import Assets
from comfy_jobs.blobs import BlobStore
from comfy_jobs.comfy import ComfyUI, Unreachable
from comfy_jobs.errors import Forbidden, NotFound, QueueFull, Unacceptable
from comfy_jobs.events import Event, Hub, follow
from comfy_jobs.idempotency import idem_key
from comfy_jobs.ledger import Ledger, open_ledger
from comfy_jobs.metrics import JobMetrics
from comfy_jobs.model import Caller, Job, JobPage, JobQuery
from comfy_jobs.outputs import Files
from comfy_jobs.settings import JobSettings
from comfy_jobs.webhooks import Sender
from comfy_jobs.worker import Worker
from comfy_jobs.workflow import asset_refs, check_body, check_graph, ref_id

log = logging.getLogger(__name__)
OBJECT_INFO_TTL_S = 60.0
RECENT_RUN_S = 10.0  # a job's run time before any has finished, for Retry-After
RETRY_AFTER_MAX_S = 600


class JobsService:
    def __init__(
        self, settings: JobSettings, comfy_url: str, limit_for: Callable[[str], int | None] | None = None
    ):
        """`limit_for(user)`: the waiting jobs that account may have (0: none), or None for
        COMFY_JOBS_MAX_WAITING_PER_USER; asked at each submission (the accounts' store
        caches it)."""
        self.s = settings
        self.comfy_url = comfy_url
        self.limit_for = limit_for
        self.hub = Hub()
        self.metrics = JobMetrics()
        # made by start(), which opens the ledger (a file, or a database connection)
        self.ledger: Ledger
        self.blobs: BlobStore
        self.files: Files
        self.assets: Assets
        self.session: aiohttp.ClientSession
        self.worker: Worker | None = None
        self.sender: Sender | None = None
        self._tasks: list[asyncio.Task] = []
        self._classes: tuple[float, set[str]] | None = None
        self._started = False

    # --- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        self.ledger = open_ledger(self.s.db_url, webhooks=bool(self.s.webhook_url))
        self._started = True
        mirror = None
        if self.s.outputs_to:
            from comfy_jobs.objstore import Mirror

            mirror = Mirror(self.s.outputs_to, self.s.jobs_dir, self.s.storage)
        self.blobs = BlobStore(self.s.blobs_dir, mirror)
        self.files = Files(self.ledger, self.blobs, self.hub, mirror)
        self.assets = Assets(self.ledger, self.blobs, self.files, self.s.asset_max_bytes)
        self.session = aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(), connector=aiohttp.TCPConnector(limit=0)
        )
        self._tasks.append(
            asyncio.create_task(
                self.hub.watch(lambda ids: self.ledger.fingerprints(ids)), name="event streams"
            )
        )
        if self.s.webhook_url:
            self.sender = Sender(
                self.ledger, self.s.webhook_url, self.s.webhook_secret, self.session, self.metrics
            )
            self._tasks.append(asyncio.create_task(self.sender.run(), name="webhooks"))
        log.info("v2 jobs: ledger %s", self.s.db_url.split("://")[0])

    def start_worker(self) -> Worker:
        """The worker that runs this service's jobs on its ComfyUI (after start())."""
        self.worker = Worker(
            self.ledger, self.s, self.comfy_url, self.session, self.files, self.hub, self.metrics
        )
        self.worker.start()
        log.info("v2 jobs: worker %s runs them on %s", self.s.worker_id, self.comfy_url)
        return self.worker

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

    # --- jobs ----------------------------------------------------------------------------
    async def submit(self, caller: Caller, body: object, idempotency_key: str | None) -> tuple[Job, bool]:
        """Check a POST /api/v2/jobs body and record the job as the caller's; (job,
        replayed): an earlier job of the caller's with the same key and body is answered as
        it is."""
        workflow, extra, meta = check_body(body)
        idem = idem_key(idempotency_key, body, caller.user)
        if not caller.is_admin:
            # the graph as recorded and run is the rewritten copy; the caller's object stays as sent
            workflow = copy.deepcopy(workflow)
            try:
                # what a member's graph may not do, and their outputs into their own folder
                member_policy.check(workflow, caller.user, self.s.member_denied_nodes)
                member_policy.own_outputs(workflow, caller.user)
            except member_policy.Refused as exc:
                raise Forbidden("forbidden", str(exc)) from None
            except member_policy.BadName as exc:
                raise Unacceptable("invalid_workflow", str(exc)) from None
        classes = await self.known_classes()
        if classes is not None:
            check_graph(workflow, classes)
        for node_id, name, ref in asset_refs(workflow):
            rid = ref_id(ref)
            if rid is None or await self.ledger.get_asset(rid, caller.scope) is None:
                raise Unacceptable(
                    "missing_asset",
                    f"node {node_id} input {name!r}: no asset {rid!r}; upload it with POST /api/v2/assets first",
                    {"node_id": node_id, "input": name, "id": rid},
                )
        try:
            job, replayed = await self.ledger.create_job(
                "job_" + uuid.uuid4().hex,
                workflow,
                extra,
                meta,
                idem,
                self.s.queue_limit,
                self.s.retention_days * 86400,
                caller.user,
                self.waiting_limit(caller.user),
            )
        except QueueFull as exc:  # or TooManyWaiting, the caller's own limit
            exc.retry_after_s = await self.retry_after(exc.depth - exc.limit + 1)
            raise
        if not replayed:
            if self.worker:
                self.worker.wake()
            log.info("job %s queued (%d nodes)", job.id, len(workflow))
        return job, replayed

    def waiting_limit(self, user: str) -> int | None:
        """How many of `user`'s jobs may wait to start (None: no limit)."""
        own = self.limit_for(user) if self.limit_for is not None else None
        if own is not None:
            return own
        return self.s.max_waiting_per_user or None

    async def retry_after(self, ahead: int) -> int:
        """Seconds until about `ahead` jobs have finished, from the median recent run time."""
        recent = await self.ledger.recent_execution_s()
        per_job = statistics.median(recent) if recent else RECENT_RUN_S
        return int(min(RETRY_AFTER_MAX_S, max(1, per_job * max(ahead, 1))))

    async def job(self, caller: Caller, job_id: str) -> Job:
        job = await self.ledger.get_job(job_id, caller.scope)
        if job is None:
            raise NotFound("not_found", f"no job {job_id}")
        return job

    async def jobs(self, caller: Caller, query: JobQuery) -> JobPage:
        """The caller's jobs (an admin's: everyone's), filtered and paged by the database."""
        return await self.ledger.list_jobs(dataclasses.replace(query, owner=caller.scope))

    async def cancel(self, caller: Caller, job_id: str) -> Job:
        """A queued job is canceled at once; a running one becomes canceling, and the worker
        holding it (this process's at once, another's at its next heartbeat) stops it."""
        job = await self.ledger.request_cancel(job_id, caller.scope)
        if job is None:
            raise NotFound("not_found", f"no job {job_id}")
        if job.status == "canceling" and self.worker:
            self.worker.cancel_now(job_id)
        self.hub.notify(job_id)
        return job

    def events(self, caller: Caller, job: Job) -> AsyncIterator[Event]:
        """The job's live events from `job` (as just read for `caller`) on, until it ends;
        read inside `self.hub.streams.slot(client)`, which refuses one stream too many."""
        return follow(job, lambda job_id: self.job(caller, job_id), self.hub)

    async def known_classes(self) -> set[str] | None:
        """ComfyUI's node classes (cached a minute), or None when it cannot be asked: a job
        is still accepted then, and ComfyUI's own check runs when the worker submits it."""
        if self.s.gateway:
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

    # --- health --------------------------------------------------------------------------
    async def not_ready(self) -> str | None:
        """Why no job can be taken now (for /readyz), or None."""
        try:
            await self.ledger.counts()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return f"the job ledger is not answering ({type(exc).__name__})"
        worker = self.worker
        if worker is not None and worker.task is not None and worker.task.done():
            return "the job worker stopped; see the proxy's log"
        return None

    async def metrics_text(self) -> str:
        try:
            counts = await self.ledger.counts()
        except Exception:  # noqa: BLE001 - the gauges are left out rather than wrong
            counts = None
        failures = self.files.mirror.failures if self._started and self.files.mirror else 0
        return self.metrics.render(counts, failures)
