"""The ledger in SQL, through SQLAlchemy Core: SQLite on one box, PostgreSQL in a cluster:
jobs and their attempts, outputs, assets, idempotency keys, the webhook outbox, and the
workers' own rows (what placement and the gateways' UI pinning read).

Why SQLAlchemy Core (synchronous) rather than aiosqlite/asyncpg: one table definition and
one set of statements (comfy_jobs/queries.py) serve SQLite and PostgreSQL; ComfyUI itself
depends on SQLAlchemy, so the image already carries it; and no async driver or greenlet is
needed: the blocking calls run on threads of our own (SQLite allows one writer at a time,
so one writing thread loses nothing).

Why our own `FOR UPDATE SKIP LOCKED` claim rather than a queue library on PostgreSQL
(procrastinate, pgqueuer): both own their job table and their worker loop, and run a task
as a Python function in the worker; a v2 job is instead a record the contract exposes
(status, attempts, outputs, assets, idempotency keys) driven through ComfyUI, and a claim
must pick among queued jobs by what models each worker has on disk (placement), which no
queue library's "next job" query does. What they add beyond the claim (LISTEN/NOTIFY
wake-ups, lease expiry) is a few lines here: engines.Listener and the lease columns.
SQLite keeps working with the same statements (one box needs no database server).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

from sqlalchemy import insert, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from comfy_jobs import engines
from comfy_jobs import queries as Q
from comfy_jobs import schema as S
from comfy_jobs.engines import Write
from comfy_jobs.errors import IdempotencyKeyReuse, LedgerError, QueueFull, TooManyWaiting
from comfy_jobs.model import (
    CANCELED,
    EXPIRED,
    QUEUED,
    TERMINAL,
    Asset,
    Claim,
    Delivery,
    Holding,
    IdemKey,
    Job,
    JobPage,
    JobQuery,
    JobSummary,
    Output,
    WorkerInfo,
)
from comfy_jobs.placement import choose, needs_of
from comfy_jobs.rows import asset_of, info_of, job_of, views_of

IDEM_TTL_S = 24 * 3600  # the contract: keys expire after 24 h
SWEEP_EVERY_S = 5.0  # how often a claim also expires queued jobs past their deadline
CANDIDATES = 16  # claimable jobs a claim looks at (and locks, briefly) at once
WORKER_LIVE_S = 60.0  # a worker not heard of for this long is gone (placement, pinning)
CONTENDED_TRIES = 3  # claims in a row while another claim holds the claimable jobs
CONTENDED_WAIT_S = 0.05  # the longest pause before looking again


class SqlLedger:
    def __init__(self, url: str, webhooks: bool = False):
        self.url = url
        self.sa_url = sa_url = engines.normalise(url)
        self.webhooks = webhooks
        self.sqlite = sa_url.get_backend_name() == "sqlite"
        self.postgres = sa_url.get_backend_name() == "postgresql"
        try:
            if self.sqlite:
                self.w, self.r = engines.sqlite_engine(sa_url, True), engines.sqlite_engine(sa_url, False)
                self.wd = engines.sqlite_engine(sa_url, True, "FULL")
            else:
                self.w = self.r = self.wd = engines.postgres_engine(sa_url, pool_size=8)
            with self.w.begin() as c:
                if self.postgres:
                    engines.schema_lock(c)
                self._create_schema(c)
        except SQLAlchemyError as exc:
            raise LedgerError(
                f"cannot open the job ledger {sa_url.render_as_string()}: {exc}; "
                "check COMFY_JOBS_DIR / COMFY_JOBS_DATABASE_URL"
            ) from None
        # SQLite takes one writer at a time: one thread writes; reads (WAL) run beside it, so
        # that polling clients never queue behind a commit.
        self.pool = ThreadPoolExecutor(max_workers=1 if self.sqlite else 8, thread_name_prefix="ledger-w")
        self.rpool = (
            ThreadPoolExecutor(max_workers=2, thread_name_prefix="ledger-r") if self.sqlite else self.pool
        )
        # SQLite: the writing thread's own connections, one per level of durability, opened on
        # first use there and kept: a pool checkout and return around every transaction cost
        # that thread about a third of what the jobs' statements do
        self._held: dict[Write, Connection] = {}
        self._creating: deque = deque()  # SQLite: creations waiting for the next group commit
        self.closed = False
        self._swept = 0.0
        self._work = asyncio.Event()
        self._listener: engines.Listener | None = None

    def _create_schema(self, c: Connection) -> None:
        S.meta.create_all(c)
        version = c.execute(select(S.schema_info.c.version)).scalar()
        if version is None:
            c.execute(insert(S.schema_info).values(version=S.SCHEMA_VERSION))
            return
        if version > S.SCHEMA_VERSION:
            raise LedgerError(
                f"the ledger at {self.sa_url.render_as_string()} has schema {version}, newer "
                f"than this program ({S.SCHEMA_VERSION}); run the newer version"
            )
        for v in range(version, S.SCHEMA_VERSION):
            for statement in S.MIGRATIONS.get(v, ()):
                c.execute(text(statement))
        c.execute(S.schema_info.update().values(version=S.SCHEMA_VERSION))

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def _read(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.rpool, fn, *args)

    @contextmanager
    def _tx(self, kind: Write):
        """A write transaction (on the writing thread), as durable as `kind` says."""
        if self.sqlite:
            level = Write.DURABLE if kind is Write.DURABLE else Write.ORDERED
            c = self._held.get(level)
            if c is None:
                c = self._held[level] = (self.wd if level is Write.DURABLE else self.w).connect()
            with c.begin():
                yield c
            return
        engine = self.wd if kind is Write.DURABLE else self.w
        with engine.begin() as c:
            if kind is Write.LIGHT and self.postgres:
                engines.light(c)
            yield c

    async def close(self) -> None:
        if self.closed:  # closing twice is harmless
            return
        self.closed = True
        if self._listener:
            self._listener.stop()
        await self._run(self._dispose)
        self.pool.shutdown(wait=True)
        self.rpool.shutdown(wait=True)

    def _dispose(self) -> None:
        for c in self._held.values():
            c.close()
        for engine in {self.w, self.r, self.wd}:
            engine.dispose()

    async def wait_for_work(self, timeout: float) -> None:
        """Until a job may have become claimable (PostgreSQL's NOTIFY from any process), or
        `timeout`. On SQLite only the timeout (the proxy wakes its own worker directly)."""
        if self.postgres and self._listener is None:
            loop = asyncio.get_running_loop()
            self._listener = engines.Listener(self.sa_url, lambda: loop.call_soon_threadsafe(self._work.set))
            self._listener.start()
        try:
            await asyncio.wait_for(self._work.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        self._work.clear()

    def _full(self, c: Connection, job: Job, outputs: bool = True) -> Job:
        if outputs:
            job.outputs = [
                Output(m["node_id"], m["name"], m["kind"], asset_of(m))
                for m in (r._mapping for r in c.execute(Q.outputs_of, {"job_id": job.id}))
            ]
        if job.status == QUEUED:
            job.queue_position = c.execute(Q.ahead, {"seq": job.seq}).scalar()
        return job

    # --- jobs --------------------------------------------------------------------------
    async def create_job(self, *args, **kw):  # Ledger.create_job's arguments
        if not self.sqlite:
            return await self._run(lambda: self._create_job(*args, **kw))
        done: Future = Future()
        self._creating.append((args, kw, done))
        # The writing thread runs its tasks in order: when this one runs, the creation is in
        # it or in one before it, and settled either way.
        await self._run(self._create_waiting)
        return done.result()

    def _create_waiting(self) -> None:
        """Group commit (SQLite): every creation waiting when the writing thread gets here, in
        one transaction and so one fsync, each in a savepoint of its own (a refusal, such as a
        full queue, undoes that one only). Each creator hears its answer only after the
        commit: a job answered 201 is on disk, as with a commit of its own."""
        batch = []
        while self._creating:
            batch.append(self._creating.popleft())
        if not batch:
            return
        answers = []
        try:
            with self._tx(Write.DURABLE) as c:
                for args, kw, done in batch:
                    savepoint = c.begin_nested()
                    try:
                        answers.append((done, self._create_in(c, *args, **kw)))
                    except IntegrityError as exc:  # one writer: no race, a bug of ours
                        savepoint.rollback()
                        done.set_exception(LedgerError(f"could not record job {args[0]}: {exc.orig}"))
                    except Exception as exc:  # noqa: BLE001 - that creator's own answer (a refusal)
                        savepoint.rollback()
                        done.set_exception(exc)
                    else:
                        savepoint.commit()
        except Exception as exc:  # noqa: BLE001 - the commit failed: none of them was recorded
            for _args, _kw, done in batch:
                if not done.done():
                    done.set_exception(exc)
            return
        for done, answer in answers:
            done.set_result(answer)

    def _create_job(self, job_id, workflow, extra_data, metadata, idem, *rest, **kw):
        for attempt in range(2):  # PostgreSQL: a concurrent insert of the same key loses the race once
            try:
                with self._tx(Write.DURABLE) as c:
                    return self._create_in(c, job_id, workflow, extra_data, metadata, idem, *rest, **kw)
            except IntegrityError as exc:
                if idem is None or attempt:
                    raise LedgerError(f"could not record job {job_id}: {exc.orig}") from None
        raise AssertionError("unreachable")

    def _create_in(
        self,
        c: Connection,
        job_id,
        workflow,
        extra_data,
        metadata,
        idem,
        queue_limit,
        retention_s,
        owner=None,
        waiting_limit=None,
    ):
        if idem is not None:
            ref = self._idem_lookup(c, "jobs", idem)
            if ref is not None:
                return self._full(c, job_of(c.execute(Q.job_by_id, {"job_id": ref}).one())), True
        if queue_limit:
            depth = c.execute(Q.depth).scalar() or 0
            if depth >= queue_limit:
                raise QueueFull(depth, queue_limit)
        if waiting_limit is not None and owner is not None:
            if self.postgres:  # one count-then-insert per owner at a time
                engines.owner_lock(c, owner)
            waiting = c.execute(Q.waiting_of, {"owner": owner}).scalar() or 0
            if waiting >= waiting_limit:
                raise TooManyWaiting(owner, waiting, waiting_limit)
        now = time.time()
        needs = needs_of(workflow)
        seq = c.execute(
            Q.job_put,
            {
                "id": job_id,
                "workflow": workflow,
                "extra_data": extra_data,
                "metadata": metadata,
                "created_at": now,
                "expires_at": now + retention_s,
                "needs": needs,
                "owner": owner,
            },
        ).scalar_one()
        if idem is not None:
            c.execute(
                Q.idem_put,
                {
                    "scope": "jobs",
                    "key": idem.stored,
                    "body_hash": idem.body_hash,
                    "ref_id": job_id,
                    "created_at": now,
                },
            )
        if self.postgres:
            engines.notify(c)
        # What was just written, without reading it back.
        job = Job(
            id=job_id,
            seq=seq,
            status=QUEUED,
            workflow=workflow,
            created_at=now,
            expires_at=now + retention_s,
            extra_data=extra_data,
            metadata=metadata,
            needs=needs,
            owner=owner,
        )
        return self._full(c, job, outputs=False), False

    @staticmethod
    def _idem_lookup(c: Connection, scope: str, idem: IdemKey) -> str | None:
        key = {"scope": scope, "key": idem.stored}
        row = c.execute(Q.idem_get, key).first()
        if row is None:
            return None
        if row.created_at < time.time() - IDEM_TTL_S:
            c.execute(Q.idem_drop, key)
            return None
        if row.body_hash != idem.body_hash:
            raise IdempotencyKeyReuse(idem.key)
        return row.ref_id

    async def idem_lookup(self, scope, idem):
        def run():
            with self._tx(Write.ORDERED) as c:
                return self._idem_lookup(c, scope, idem)

        return await self._run(run)

    async def idem_record(self, scope, idem, ref_id):
        def run():
            with self._tx(Write.ORDERED) as c:
                c.execute(
                    Q.idem_put,
                    {
                        "scope": scope,
                        "key": idem.stored,
                        "body_hash": idem.body_hash,
                        "ref_id": ref_id,
                        "created_at": time.time(),
                    },
                )

        await self._run(run)

    async def get_job(self, job_id, visible_to=None):
        def run():
            with self.r.connect() as c:
                row = self._job_row(c, job_id, visible_to)
                if row is None:
                    return None
                job = self._full(c, job_of(row))
                if job.status == QUEUED:
                    self._explain_wait(c, job)
                return job

        return await self._read(run)

    @staticmethod
    def _job_row(c: Connection, job_id: str, visible_to: str | None):
        if visible_to is None:
            return c.execute(Q.job_by_id, {"job_id": job_id}).first()
        return c.execute(Q.job_by_id_of, {"job_id": job_id, "owner": visible_to}).first()

    def _explain_wait(self, c: Connection, job: Job) -> None:
        """A queued job that no live worker can take says why, in its progress message."""
        from comfy_jobs.placement import waiting_reason

        views = views_of(c.execute(Q.workers_seen, {"since": time.time() - WORKER_LIVE_S}).all())
        reason = waiting_reason(job.needs, views)
        if reason:
            job.progress = {
                "value": 0.0,
                "nodes_done": 0,
                "nodes_total": max(len(job.workflow), 1),
                **(job.progress or {}),
                "message": reason,
            }

    async def list_jobs(self, query: JobQuery) -> JobPage:
        def run():
            q = Q.listing.limit(query.limit + 1)  # one more than asked: is there a next page?
            if query.before_seq is not None:
                q = q.where(S.jobs.c.seq < query.before_seq)
            if query.owner is not None:
                q = q.where(S.jobs.c.owner == query.owner)
            if query.status:
                q = q.where(S.jobs.c.status == query.status)
            for key, value in sorted(query.metadata.items()):
                q = q.where(S.jobs.c["metadata"][key].as_string() == value)
            with self.r.connect() as c:
                rows = c.execute(q).all()
            jobs = [JobSummary(**r._mapping) for r in rows[: query.limit]]
            more = len(rows) > query.limit
            return JobPage(jobs, jobs[-1].seq if more else None)

        return await self._read(run)

    async def request_cancel(self, job_id, visible_to=None):
        def run():
            now = time.time()
            with self._tx(Write.DURABLE) as c:
                if visible_to is not None and self._job_row(c, job_id, visible_to) is None:
                    return None  # another's job: as if there were none
                if c.execute(Q.cancel_queued, {"job_id": job_id, "now": now}).first() is not None:
                    self._enqueue_webhook(c, job_id, CANCELED)
                else:
                    c.execute(Q.cancel_running, {"job_id": job_id})
                row = c.execute(Q.job_by_id, {"job_id": job_id}).first()
                return self._full(c, job_of(row)) if row else None

        return await self._run(run)

    async def fingerprints(self, job_ids):
        def run():
            with self.r.connect() as c:
                rows = c.execute(Q.fingerprints, {"ids": list(job_ids)}).all()
            return {r[0]: tuple(r[1:]) for r in rows}

        return await self._read(run)

    async def counts(self):
        def run():
            with self.r.connect() as c:
                rows = c.execute(Q.counts).all()
            return {s: 0 for s in ("queued", "running", "canceling")} | {s: n for s, n in rows}

        return await self._read(run)

    async def recent_execution_s(self):
        def run():
            with self.r.connect() as c:
                rows = c.execute(Q.recent).scalars().all()
            return [float(x) for x in rows if x is not None]

        return await self._read(run)

    # --- the worker's side -------------------------------------------------------------
    async def claim(self, worker, lease_s, prompt_id=None):
        contended = False  # an owner's claimable jobs were all locked by another claim

        def run():
            nonlocal contended
            now = time.time()
            with self._tx(Write.ORDERED) as c:
                if now - self._swept >= SWEEP_EVERY_S:
                    self._swept = now
                    for job_id in c.execute(Q.expire, {"now": now}).scalars().all():
                        self._enqueue_webhook(c, job_id, EXPIRED)
                owners = c.execute(Q.owners_waiting, {"now": now}).all()
                if not owners:
                    return None
                if len(owners) > 1:
                    running = dict(c.execute(Q.owners_running, {"now": now}).all())
                    owners.sort(key=lambda o: (running.get(o.owner, 0), o.oldest))
                views: dict | None = None
                for owner in owners:
                    rows = c.execute(
                        Q.candidates_of_nobody if owner.owner is None else Q.candidates_of,
                        {"now": now, "n": CANDIDATES, "owner": owner.owner},
                    ).all()
                    if not rows:
                        contended = True
                        continue  # all locked by a worker claiming at the same moment
                    seq: int | None = rows[0].seq
                    if any(r.needs for r in rows):
                        if views is None:
                            seen = c.execute(Q.workers_seen, {"since": now - WORKER_LIVE_S}).all()
                            views = {v.id: v for v in views_of(seen)}
                        me = views.get(worker)
                        if me is not None:
                            jobs = [(r.seq, r.needs, r.created_at) for r in rows]
                            seq = choose(me, list(views.values()), jobs, now)
                    if seq is None:
                        continue  # none of this owner's that this worker should take
                    row = c.execute(
                        Q.take, {"at_seq": seq, "now": now, "worker": worker, "lease_until": now + lease_s}
                    ).first()
                    if row is not None:
                        break
                else:
                    return None
                job = job_of(row)
                job.others_waiting = len(owners) > 1 or len(rows) > 1
                if job.prompt_id is None and prompt_id is not None:
                    # Its first attempt, in the same transaction: one commit (and, on
                    # PostgreSQL, one WAL flush) fewer per job than a separate start_attempt.
                    # A job never tried has no outputs to read back, nor to drop.
                    key = {"job_id": job.id, "worker": worker, "prompt_id": prompt_id, "now": now}
                    job.attempts = c.execute(Q.attempt_count, key).scalar_one()
                    c.execute(Q.attempt_put, {**key, "n": job.attempts})
                    job.prompt_id = prompt_id
                    return self._full(c, job, outputs=False)
                return self._full(c, job, outputs=job.prompt_id is not None)

        for _ in range(CONTENDED_TRIES):
            contended = False
            job = await self._run(run)
            if job is not None or not contended:
                return job
            # The other claim may leave those jobs (placement keeps them for a worker like this
            # one): looked at again once its transaction has ended, at a random moment, so that
            # two workers woken together do not keep claiming in step, one blind to the jobs
            # the other looks at (which would hand a job away from its favourite worker)
            await asyncio.sleep(random.uniform(0.005, CONTENDED_WAIT_S))
        return None

    async def forget_own_leases(self, worker):
        """At start: runs this worker held before a restart are resumable at once, rather
        than after their lease runs out."""

        def run():
            with self._tx(Write.ORDERED) as c:
                n = c.execute(Q.forget, {"worker": worker}).rowcount
                if n and self.postgres:
                    engines.notify(c)
                return n

        return await self._run(run)

    async def heartbeat(self, job_id, worker, lease_s):
        def run():
            with self._tx(Write.LIGHT) as c:
                row = c.execute(
                    Q.heartbeat, {"job_id": job_id, "worker": worker, "lease_until": time.time() + lease_s}
                ).first()
            return Claim(False) if row is None else Claim(True, bool(row[0]))

        return await self._run(run)

    async def release(self, job_id, worker):
        def run():
            with self._tx(Write.ORDERED) as c:
                c.execute(Q.release, {"job_id": job_id, "worker": worker})
                if self.postgres:
                    engines.notify(c)

        await self._run(run)

    async def count_error(self, job_id, worker):
        def run():
            with self._tx(Write.ORDERED) as c:
                return c.execute(Q.count_error, {"job_id": job_id, "worker": worker}).scalar()

        return await self._run(run)

    async def start_attempt(self, job_id, worker, prompt_id):
        def run():
            now = time.time()
            key = {"job_id": job_id, "worker": worker, "prompt_id": prompt_id, "now": now}
            with self._tx(Write.ORDERED) as c:
                n = c.execute(Q.attempt_count, key).scalar()
                if n is None:
                    raise LedgerError(f"job {job_id} is no longer held by {worker}")
                c.execute(Q.attempt_put, {**key, "n": n})
                # A new attempt means none succeeded: what a lost run committed before it was
                # lost is not the job's output (the new run saves its own); the assets stay.
                c.execute(Q.outputs_drop, key)
                return n

        return await self._run(run)

    async def abort_attempt(self, job_id, worker, prompt_id):
        def run():
            with self._tx(Write.ORDERED) as c:
                c.execute(Q.attempt_drop, {"prompt_id": prompt_id})
                c.execute(Q.attempt_uncount, {"job_id": job_id, "worker": worker, "pid": prompt_id})

        await self._run(run)

    async def hand_back(self, job_id, worker, prompt_id, holding=None):
        def run():
            key = {"job_id": job_id, "worker": worker}
            with self._tx(Write.ORDERED) as c:
                if prompt_id is not None:
                    if c.execute(Q.attempt_uncount, {**key, "pid": prompt_id}).rowcount:
                        c.execute(Q.attempt_drop, {"prompt_id": prompt_id})
                c.execute(Q.hand_back, key)
                self._holds(c, worker, holding)
                if self.postgres:
                    engines.notify(c)

        await self._run(run)

    async def end_attempt(self, job_id, prompt_id, outcome, reason):
        def run():
            with self._tx(Write.ORDERED) as c:
                c.execute(
                    Q.attempt_end,
                    {"pid": prompt_id, "now": time.time(), "outcome": outcome, "reason": reason},
                )

        await self._run(run)

    async def attempts_of(self, job_id):
        def run():
            with self.r.connect() as c:
                return [dict(r._mapping) for r in c.execute(Q.attempts_of, {"job_id": job_id})]

        return await self._read(run)

    async def set_progress(self, job_id, worker, progress):
        def run():
            with self._tx(Write.LIGHT) as c:
                c.execute(Q.progress, {"job_id": job_id, "worker": worker, "progress": progress})

        await self._run(run)

    async def add_output(self, job_id, node_id, name, kind, asset):
        # LIGHT: an output lost with the database is fetched again from ComfyUI's history at
        # the end of the run, and the job's durable end flushes it (the log is written in order).
        def run():
            try:
                with self._tx(Write.LIGHT) as c:
                    self._put_asset(c, asset)
                    c.execute(
                        Q.output_put,
                        {
                            "job_id": job_id,
                            "node_id": node_id,
                            "name": name,
                            "kind": kind,
                            "asset_id": asset.id,
                        },
                    )
                return True
            except IntegrityError:
                return False

        return await self._run(run)

    async def finish(
        self, job_id, worker, status, error, progress=None, attempt=None, outputs=(), holding=None
    ):
        assert status in TERMINAL

        def run():
            values = {
                "job_id": job_id,
                "worker": worker,
                "status": status,
                "now": time.time(),
                "error": error,
            }
            with self._tx(Write.DURABLE) as c:
                if attempt is not None:
                    prompt_id, outcome, reason = attempt
                    c.execute(
                        Q.attempt_end,
                        {"pid": prompt_id, "now": values["now"], "outcome": outcome, "reason": reason},
                    )
                if progress is None:
                    n = c.execute(Q.finish, values).rowcount
                else:
                    n = c.execute(Q.finish_with_progress, {**values, "progress": progress}).rowcount
                if n:
                    self._put_outputs(c, job_id, outputs)
                    self._enqueue_webhook(c, job_id, status)
                self._holds(c, worker, holding, values["now"])
                return bool(n)

        return await self._run(run)

    @staticmethod
    def _holds(c: Connection, worker: str, holding: Holding | None, now: float | None = None) -> None:
        """The worker's row, in the transaction that ends one of its jobs (a worker with no
        row yet gets one on its next beat)."""
        if holding is not None:
            c.execute(
                Q.worker_holds,
                {"wid": worker, "loaded": holding.loaded, "held": holding.job_id, "now": now or time.time()},
            )

    def _put_outputs(self, c: Connection, job_id: str, outputs: Sequence[Output]) -> None:
        if not outputs:
            return
        have = {(r.node_id, r.name) for r in c.execute(Q.output_names, {"job_id": job_id})}
        for o in outputs:
            if (o.node_id, o.name) not in have:
                self._put_asset(c, o.asset)
                c.execute(
                    Q.output_put,
                    {
                        "job_id": job_id,
                        "node_id": o.node_id,
                        "name": o.name,
                        "kind": o.type,
                        "asset_id": o.asset.id,
                    },
                )

    # --- assets --------------------------------------------------------------------------
    @staticmethod
    def _put_asset(c: Connection, a: Asset) -> None:
        if c.execute(Q.asset_exists, {"id": a.id}).first() is None:
            c.execute(
                Q.asset_put,
                {
                    "id": a.id,
                    "hash": a.hash,
                    "size": a.size,
                    "content_type": a.content_type,
                    "file_path": a.file_path,
                    "created_at": a.created_at,
                    "job_id": a.job_id,
                    "tags": a.tags,
                    "owner": a.owner,
                },
            )

    async def put_asset(self, asset):
        def run():
            with self._tx(Write.ORDERED) as c:
                self._put_asset(c, asset)

        await self._run(run)

    async def get_asset(self, asset_id, visible_to=None):
        def run():
            with self.r.connect() as c:
                if visible_to is None:
                    row = c.execute(Q.asset_by_id, {"id": asset_id}).first()
                else:
                    row = c.execute(Q.asset_by_id_of, {"id": asset_id, "owner": visible_to}).first()
            return asset_of(row._mapping) if row else None

        return await self._read(run)

    async def find_blob(self, digest, visible_to=None):
        def run():
            with self.r.connect() as c:
                if visible_to is None:
                    row = c.execute(Q.asset_by_hash, {"hash": digest}).first()
                else:
                    row = c.execute(Q.asset_by_hash_of, {"hash": digest, "owner": visible_to}).first()
            return asset_of(row._mapping) if row else None

        return await self._read(run)

    async def set_remote(self, digest, uri):
        def run():
            try:
                with self._tx(Write.ORDERED) as c:
                    if c.execute(Q.remote_exists, {"hash": digest}).first() is None:
                        c.execute(Q.remote_put, {"hash": digest, "uri": uri})
            except IntegrityError:
                pass  # another process recorded the same blob's copy at the same moment

        await self._run(run)

    # --- webhook outbox ----------------------------------------------------------------
    def _enqueue_webhook(self, c: Connection, job_id: str, status: str) -> None:
        if self.webhooks:
            c.execute(
                Q.delivery_put,
                {"job_id": job_id, "body": {"type": f"job.{status}", "job_id": job_id}, "now": time.time()},
            )

    async def due_deliveries(self, now, limit):
        def run():
            with self.r.connect() as c:
                rows = c.execute(Q.deliveries_due, {"now": now, "n": limit}).all()
            return [Delivery(r.id, r.job_id, r.body, r.attempts) for r in rows]

        return await self._read(run)

    async def delivery_done(self, delivery_id, ok, error, retry_at):
        def run():
            with self._tx(Write.ORDERED) as c:
                c.execute(
                    Q.delivery_end,
                    {
                        "did": delivery_id,
                        "done": ok or retry_at is None,
                        "error": error or None,
                        "next_at": retry_at or time.time(),
                    },
                )

        await self._run(run)

    # --- workers -------------------------------------------------------------------------
    async def worker_beat(self, info: WorkerInfo, starting: bool = False) -> bool:
        """Write this worker's row (created on its first beat); returns whether it was asked
        to drain. `starting`: a fresh start clears an earlier drain request."""

        def run():
            now = time.time()
            values = {
                "id": info.id,
                "ui_url": info.ui_url,
                "models": info.models,
                "loaded": info.loaded,
                "job_id": info.job_id,
                "now": now,
            }
            with self._tx(Write.LIGHT) as c:
                if starting:
                    c.execute(Q.worker_restart, {"wid": info.id, "now": now})
                row = c.execute(Q.worker_beat, {**values, "wid": info.id}).first()
                if row is not None:
                    return bool(row[0])
            try:
                with self._tx(Write.ORDERED) as c:
                    c.execute(Q.worker_put, values)
                    if self.postgres:
                        engines.notify(c)  # a new worker may take jobs others could not
            except IntegrityError:
                pass  # a beat of the same worker got there first
            return False

        return await self._run(run)

    async def request_drain(self, worker_id: str) -> bool:
        def run():
            with self._tx(Write.DURABLE) as c:
                return bool(c.execute(Q.worker_drain, {"wid": worker_id}).rowcount)

        return await self._run(run)

    async def forget_worker(self, worker_id: str) -> None:
        def run():
            with self._tx(Write.ORDERED) as c:
                c.execute(Q.worker_gone, {"id": worker_id})

        await self._run(run)

    async def worker(self, worker_id: str) -> WorkerInfo | None:
        def run():
            with self.r.connect() as c:
                row = c.execute(Q.worker_get, {"id": worker_id}).first()
            return info_of(row) if row else None

        return await self._read(run)

    async def workers(self, live_s: float) -> list[WorkerInfo]:
        def run():
            with self.r.connect() as c:
                return [info_of(r) for r in c.execute(Q.workers_seen, {"since": time.time() - live_s})]

        return await self._read(run)

    async def pin(self, key: str, live: Sequence[WorkerInfo]) -> str | None:
        """The worker `key` (a browser session) is pinned to, among `live` (those a gateway
        can relay to): the pin shared by every gateway replica, or a new one on the worker
        with the fewest pinned sessions when there is none or its worker is gone."""
        ids = {w.id for w in live}

        def run():
            with self._tx(Write.ORDERED) as c:
                current = c.execute(Q.pin_get, {"key": key}).scalar()
                if current in ids or not ids:
                    return current if current in ids else None
                load = dict.fromkeys(sorted(ids), 0) | {w: n for w, n in c.execute(Q.pin_counts) if w in ids}
                chosen = min(load, key=lambda w: (load[w], w))
                c.execute(Q.pin_drop, {"key": key})
                c.execute(Q.pin_put, {"key": key, "worker_id": chosen, "now": time.time()})
                return chosen

        try:
            return await self._run(run)
        except IntegrityError:  # another gateway pinned the same session at the same moment
            return await self.pin(key, live)
