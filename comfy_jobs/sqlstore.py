"""The ledger in SQL, through SQLAlchemy Core.

Why SQLAlchemy Core (synchronous) rather than aiosqlite/asyncpg or a queue library: one
table definition and one set of queries serve SQLite and PostgreSQL, including the claim
(`FOR UPDATE SKIP LOCKED` compiles on PostgreSQL and is left out on SQLite, where the
whole write is serialised anyway); ComfyUI itself depends on SQLAlchemy, so the image already
carries it at the pinned version; and no async driver or greenlet is needed: the blocking
calls run on threads of our own (SQLite allows one writer at a time, so one writing thread
loses nothing). Queue libraries (procrastinate, pgqueuer) are PostgreSQL-only and own the
job table, while the contract needs our own job records with attempts, outputs and assets.
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import and_, create_engine, delete, event, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from comfy_jobs import schema as S
from comfy_jobs.errors import IdempotencyKeyReuse, LedgerError
from comfy_jobs.ledger import Claim, Delivery, IdemKey, QueueFull
from comfy_jobs.model import (ACTIVE, CANCELED, CANCELING, EXPIRED, QUEUED, RUNNING, TERMINAL, Asset,
                              Job, Output)

IDEM_TTL_S = 24 * 3600  # the contract: keys expire after 24 h


def _sqlite_engine(url: str, immediate: bool, synchronous: str = "NORMAL") -> Engine:
    """`synchronous`: FULL fsyncs each commit (survives a power cut); NORMAL in WAL mode
    survives the process being killed, and the next FULL commit makes it durable too."""
    path = make_url(url).database
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA busy_timeout=15000")  # another process (a worker) may be writing
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        # Writers take the lock up front: a deferred transaction that reads and then writes
        # can fail with SQLITE_BUSY instead of waiting when two processes race.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class SqlLedger:
    def __init__(self, url: str, webhooks: bool = False):
        self.url = url
        self.webhooks = webhooks
        self.sqlite = url.startswith("sqlite")
        try:
            if self.sqlite:
                # What the contract promises is fsynced: a job once answered 201, a terminal
                # state, a cancel. Leases, progress and attempts are written without it: a
                # power cut loses ComfyUI's run as well, and the job is simply run again.
                self.w, self.r = _sqlite_engine(url, True), _sqlite_engine(url, False)
                self.wd = _sqlite_engine(url, True, "FULL")
            else:
                self.w = self.r = self.wd = create_engine(url, pool_pre_ping=True)
            with self.w.begin() as c:
                S.meta.create_all(c)
                version = c.execute(select(S.schema_info.c.version)).scalar()
                if version is None:
                    c.execute(insert(S.schema_info).values(version=S.SCHEMA_VERSION))
                elif version > S.SCHEMA_VERSION:
                    raise LedgerError(f"the ledger at {url} has schema {version}, newer than this "
                                      f"program ({S.SCHEMA_VERSION}); run the newer version")
        except SQLAlchemyError as exc:
            raise LedgerError(f"cannot open the job ledger {make_url(url).render_as_string()}: {exc}; "
                              "check COMFY_JOBS_DIR / COMFY_JOBS_DATABASE_URL") from None
        # SQLite takes one writer at a time: one thread writes; reads (WAL) run beside it, so
        # that polling clients never queue behind a commit.
        self.pool = ThreadPoolExecutor(max_workers=1 if self.sqlite else 4, thread_name_prefix="ledger-w")
        self.rpool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ledger-r") if self.sqlite else self.pool
        self.closed = False

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def _read(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.rpool, fn, *args)

    async def close(self) -> None:
        if self.closed:  # closing twice is harmless
            return
        self.closed = True
        await self._run(self._dispose)
        self.pool.shutdown(wait=True)
        self.rpool.shutdown(wait=True)

    def _dispose(self) -> None:
        for engine in {self.w, self.r, self.wd}:
            engine.dispose()

    # --- rows -> records ---------------------------------------------------------------
    @staticmethod
    def _job(row) -> Job:
        m = row._mapping
        run_s = (m["completed_at"] - m["run_started_at"]) if m["completed_at"] and m["run_started_at"] else None
        return Job(id=m["id"], seq=m["seq"], status=m["status"], workflow=m["workflow"],
                   created_at=m["created_at"], expires_at=m["expires_at"], started_at=m["started_at"],
                   completed_at=m["completed_at"], attempts=m["attempts"], prompt_id=m["prompt_id"],
                   lease_owner=m["lease_owner"], lease_until=m["lease_until"],
                   cancel_requested=bool(m["cancel_requested"]), progress=m["progress"], error=m["error"],
                   extra_data=m["extra_data"], metadata=m["metadata"], execution_s=run_s)

    @staticmethod
    def _asset(m) -> Asset:
        return Asset(id=m["id"], hash=m["hash"], size=m["size"], content_type=m["content_type"],
                     file_path=m["file_path"], created_at=m["created_at"], job_id=m["job_id"],
                     tags=list(m["tags"] or []), remote_uri=m.get("uri"))

    def _full(self, c: Connection, job: Job) -> Job:
        rows = c.execute(select(S.outputs, S.assets, S.remotes.c.uri)
                         .join(S.assets, S.assets.c.id == S.outputs.c.asset_id)
                         .outerjoin(S.remotes, S.remotes.c.hash == S.assets.c.hash)
                         .where(S.outputs.c.job_id == job.id).order_by(S.outputs.c.seq)).all()
        job.outputs = [Output(m["node_id"], m["name"], m["kind"], self._asset(m))
                       for m in (r._mapping for r in rows)]
        if job.status == QUEUED:
            job.queue_position = c.execute(select(func.count()).select_from(S.jobs).where(
                S.jobs.c.status == QUEUED, S.jobs.c.seq < job.seq)).scalar()
        return job

    # --- jobs --------------------------------------------------------------------------
    async def create_job(self, job_id, workflow, extra_data, metadata, idem, queue_limit, retention_s):
        return await self._run(self._create_job, job_id, workflow, extra_data, metadata, idem,
                               queue_limit, retention_s)

    def _create_job(self, job_id, workflow, extra_data, metadata, idem, queue_limit, retention_s):
        for attempt in range(2):  # PostgreSQL: a concurrent insert of the same key loses the race once
            try:
                with self.wd.begin() as c:
                    if idem is not None:
                        ref = self._idem_lookup(c, "jobs", idem)
                        if ref is not None:
                            return self._full(c, self._job(c.execute(
                                select(S.jobs).where(S.jobs.c.id == ref)).one())), True
                    if queue_limit:
                        depth = c.execute(select(func.count()).select_from(S.jobs)
                                          .where(S.jobs.c.status.in_(ACTIVE))).scalar() or 0
                        if depth >= queue_limit:
                            raise QueueFull(depth, queue_limit)
                    now = time.time()
                    row = c.execute(insert(S.jobs).values(
                        id=job_id, status=QUEUED, workflow=workflow, extra_data=extra_data,
                        metadata=metadata, created_at=now, expires_at=now + retention_s,
                        attempts=0, cancel_requested=False).returning(*S.jobs.c)).one()
                    if idem is not None:
                        c.execute(insert(S.idempotency).values(scope="jobs", key=idem.key, body_hash=idem.body_hash,
                                                               ref_id=job_id, created_at=now))
                    return self._full(c, self._job(row)), False
            except IntegrityError as exc:
                if idem is None or attempt:
                    raise LedgerError(f"could not record job {job_id}: {exc.orig}") from None
        raise AssertionError("unreachable")

    @staticmethod
    def _idem_lookup(c: Connection, scope: str, idem: IdemKey) -> str | None:
        where = and_(S.idempotency.c.scope == scope, S.idempotency.c.key == idem.key)
        row = c.execute(select(S.idempotency).where(where)).first()
        if row is None:
            return None
        if row.created_at < time.time() - IDEM_TTL_S:
            c.execute(delete(S.idempotency).where(where))
            return None
        if row.body_hash != idem.body_hash:
            raise IdempotencyKeyReuse(idem.key)
        return row.ref_id

    async def idem_lookup(self, scope, idem):
        def run():
            with self.w.begin() as c:
                return self._idem_lookup(c, scope, idem)
        return await self._run(run)

    async def idem_record(self, scope, idem, ref_id):
        def run():
            with self.w.begin() as c:
                c.execute(insert(S.idempotency).values(scope=scope, key=idem.key, body_hash=idem.body_hash,
                                                       ref_id=ref_id, created_at=time.time()))
        await self._run(run)

    async def get_job(self, job_id):
        def run():
            with self.r.connect() as c:
                row = c.execute(select(S.jobs).where(S.jobs.c.id == job_id)).first()
                return self._full(c, self._job(row)) if row else None
        return await self._read(run)

    async def list_jobs(self, limit, before_seq, status):
        def run():
            q = select(S.jobs).order_by(S.jobs.c.seq.desc()).limit(limit)
            if before_seq is not None:
                q = q.where(S.jobs.c.seq < before_seq)
            if status:
                q = q.where(S.jobs.c.status == status)
            with self.r.connect() as c:
                return [self._full(c, self._job(r)) for r in c.execute(q).all()]
        return await self._read(run)

    async def request_cancel(self, job_id):
        def run():
            with self.wd.begin() as c:
                now = time.time()
                c.execute(update(S.jobs).where(S.jobs.c.id == job_id, S.jobs.c.status == QUEUED)
                          .values(status=CANCELED, completed_at=now, lease_owner=None, lease_until=None))
                if c.execute(select(S.jobs.c.status).where(S.jobs.c.id == job_id)).scalar() == CANCELED:
                    self._enqueue_webhook(c, job_id, CANCELED)
                c.execute(update(S.jobs).where(S.jobs.c.id == job_id, S.jobs.c.status == RUNNING)
                          .values(status=CANCELING, cancel_requested=True))
                row = c.execute(select(S.jobs).where(S.jobs.c.id == job_id)).first()
                return self._full(c, self._job(row)) if row else None
        return await self._run(run)

    async def counts(self):
        def run():
            with self.r.connect() as c:
                rows = c.execute(select(S.jobs.c.status, func.count()).where(S.jobs.c.status.in_(ACTIVE))
                                 .group_by(S.jobs.c.status)).all()
            return {s: 0 for s in ACTIVE} | {s: n for s, n in rows}
        return await self._read(run)

    async def recent_execution_s(self):
        def run():
            with self.r.connect() as c:
                rows = c.execute(select(S.jobs.c.completed_at - S.jobs.c.run_started_at)
                                 .where(S.jobs.c.status == "succeeded", S.jobs.c.run_started_at.is_not(None))
                                 .order_by(S.jobs.c.seq.desc()).limit(20)).scalars().all()
            return [float(x) for x in rows if x is not None]
        return await self._read(run)

    # --- the worker's side -------------------------------------------------------------
    async def claim(self, worker, lease_s):
        def run():
            now = time.time()
            with self.w.begin() as c:
                expired = c.execute(update(S.jobs).where(S.jobs.c.status == QUEUED, S.jobs.c.expires_at < now)
                                    .values(status=EXPIRED, completed_at=now).returning(S.jobs.c.id)).scalars().all()
                for job_id in expired:
                    self._enqueue_webhook(c, job_id, EXPIRED)
                candidate = (select(S.jobs.c.seq).where(or_(
                    S.jobs.c.status == QUEUED,
                    and_(S.jobs.c.status.in_((RUNNING, CANCELING)), S.jobs.c.lease_until < now))))
                candidate = candidate.order_by(S.jobs.c.seq).limit(1).with_for_update(skip_locked=True)
                row = c.execute(update(S.jobs).where(S.jobs.c.seq == candidate.scalar_subquery()).values(
                    status=func.coalesce(func.nullif(S.jobs.c.status, QUEUED), RUNNING),
                    lease_owner=worker, lease_until=now + lease_s,
                    started_at=func.coalesce(S.jobs.c.started_at, now)).returning(*S.jobs.c)).first()
                return self._full(c, self._job(row)) if row else None
        return await self._run(run)

    async def forget_own_leases(self, worker):
        """At start: runs this worker held before a restart are resumable at once, rather
        than after their lease runs out."""
        def run():
            with self.w.begin() as c:
                return c.execute(update(S.jobs).where(S.jobs.c.lease_owner == worker,
                                                      S.jobs.c.status.in_((RUNNING, CANCELING)))
                                 .values(lease_until=0)).rowcount
        return await self._run(run)

    def _held(self, job_id, worker):
        return and_(S.jobs.c.id == job_id, S.jobs.c.lease_owner == worker,
                    S.jobs.c.status.in_((RUNNING, CANCELING)))

    async def heartbeat(self, job_id, worker, lease_s):
        def run():
            with self.w.begin() as c:
                row = c.execute(update(S.jobs).where(self._held(job_id, worker))
                                .values(lease_until=time.time() + lease_s)
                                .returning(S.jobs.c.cancel_requested)).first()
            return Claim(False) if row is None else Claim(True, bool(row[0]))
        return await self._run(run)

    async def release(self, job_id, worker):
        def run():
            with self.w.begin() as c:
                c.execute(update(S.jobs).where(self._held(job_id, worker)).values(lease_until=0))
        await self._run(run)

    async def start_attempt(self, job_id, worker, prompt_id):
        def run():
            now = time.time()
            with self.w.begin() as c:
                n = c.execute(update(S.jobs).where(self._held(job_id, worker)).values(
                    attempts=S.jobs.c.attempts + 1, prompt_id=prompt_id,
                    run_started_at=func.coalesce(S.jobs.c.run_started_at, now))
                    .returning(S.jobs.c.attempts)).scalar()
                if n is None:
                    raise LedgerError(f"job {job_id} is no longer held by {worker}")
                c.execute(insert(S.attempts).values(job_id=job_id, n=n, prompt_id=prompt_id, worker=worker,
                                                    started_at=now))
                return n
        return await self._run(run)

    async def abort_attempt(self, job_id, worker, prompt_id):
        def run():
            with self.w.begin() as c:
                c.execute(delete(S.attempts).where(S.attempts.c.prompt_id == prompt_id))
                c.execute(update(S.jobs).where(self._held(job_id, worker), S.jobs.c.prompt_id == prompt_id)
                          .values(attempts=S.jobs.c.attempts - 1, prompt_id=None))
        await self._run(run)

    async def end_attempt(self, job_id, prompt_id, outcome, reason):
        def run():
            with self.w.begin() as c:
                c.execute(update(S.attempts).where(S.attempts.c.prompt_id == prompt_id, S.attempts.c.ended_at.is_(None))
                          .values(ended_at=time.time(), outcome=outcome, reason=reason))
        await self._run(run)

    async def attempts_of(self, job_id):
        def run():
            with self.r.connect() as c:
                return [dict(r._mapping) for r in c.execute(
                    select(S.attempts).where(S.attempts.c.job_id == job_id).order_by(S.attempts.c.n))]
        return await self._read(run)

    async def set_progress(self, job_id, worker, progress):
        def run():
            with self.w.begin() as c:
                c.execute(update(S.jobs).where(self._held(job_id, worker)).values(progress=progress))
        await self._run(run)

    async def add_output(self, job_id, node_id, name, kind, asset):
        def run():
            try:
                with self.w.begin() as c:
                    self._put_asset(c, asset)
                    c.execute(insert(S.outputs).values(job_id=job_id, node_id=node_id, name=name, kind=kind,
                                                       asset_id=asset.id))
                return True
            except IntegrityError:
                return False
        return await self._run(run)

    async def finish(self, job_id, worker, status, error, progress=None):
        assert status in TERMINAL

        def run():
            with self.wd.begin() as c:
                values = dict(status=status, completed_at=time.time(), error=error, lease_owner=None,
                              lease_until=None)
                if progress is not None:
                    values["progress"] = progress
                n = c.execute(update(S.jobs).where(self._held(job_id, worker)).values(**values)).rowcount
                if n:
                    self._enqueue_webhook(c, job_id, status)
                return bool(n)
        return await self._run(run)

    # --- assets --------------------------------------------------------------------------
    @staticmethod
    def _put_asset(c: Connection, a: Asset) -> None:
        if c.execute(select(S.assets.c.id).where(S.assets.c.id == a.id)).first() is None:
            c.execute(insert(S.assets).values(id=a.id, hash=a.hash, size=a.size, content_type=a.content_type,
                                              file_path=a.file_path, created_at=a.created_at, job_id=a.job_id,
                                              tags=a.tags))

    async def put_asset(self, asset):
        def run():
            with self.w.begin() as c:
                self._put_asset(c, asset)
        await self._run(run)

    def _select_asset(self):
        return select(S.assets, S.remotes.c.uri).outerjoin(S.remotes, S.remotes.c.hash == S.assets.c.hash)

    async def get_asset(self, asset_id):
        def run():
            with self.r.connect() as c:
                row = c.execute(self._select_asset().where(S.assets.c.id == asset_id)).first()
            return self._asset(row._mapping) if row else None
        return await self._read(run)

    async def find_blob(self, digest):
        def run():
            with self.r.connect() as c:
                row = c.execute(self._select_asset().where(S.assets.c.hash == digest).limit(1)).first()
            return self._asset(row._mapping) if row else None
        return await self._read(run)

    async def set_remote(self, digest, uri):
        def run():
            with self.w.begin() as c:
                if c.execute(select(S.remotes).where(S.remotes.c.hash == digest)).first() is None:
                    c.execute(insert(S.remotes).values(hash=digest, uri=uri))
        await self._run(run)

    # --- webhook outbox ----------------------------------------------------------------
    def _enqueue_webhook(self, c: Connection, job_id: str, status: str) -> None:
        if self.webhooks:
            c.execute(insert(S.deliveries).values(job_id=job_id, body={"type": f"job.{status}", "job_id": job_id},
                                                  attempts=0, next_at=time.time(), done=False))

    async def due_deliveries(self, now, limit):
        def run():
            with self.r.connect() as c:
                rows = c.execute(select(S.deliveries).where(S.deliveries.c.done.is_(False),
                                                            S.deliveries.c.next_at <= now)
                                 .order_by(S.deliveries.c.id).limit(limit)).all()
            return [Delivery(r.id, r.job_id, r.body, r.attempts) for r in rows]
        return await self._read(run)

    async def delivery_done(self, delivery_id, ok, error, retry_at):
        def run():
            with self.w.begin() as c:
                c.execute(update(S.deliveries).where(S.deliveries.c.id == delivery_id).values(
                    attempts=S.deliveries.c.attempts + 1, done=ok or retry_at is None,
                    last_error=error or None, next_at=retry_at or time.time()))
        await self._run(run)
