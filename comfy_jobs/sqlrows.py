"""The rest of the SQL ledger: rows as records, assets, the webhook outbox, and the workers'
own rows (what placement and the gateways' UI pinning read). SqlLedger (sqlstore.py) mixes
this in; `self._tx`, `self._run`, `self._read` and `self.r` are its."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from comfy_jobs import engines
from comfy_jobs import queries as Q
from comfy_jobs.engines import Write
from comfy_jobs.model import Asset, Delivery, Job, WorkerInfo
from comfy_jobs.placement import WorkerView, names_of


def job_of(row) -> Job:
    m = row._mapping
    run_s = (m["completed_at"] - m["run_started_at"]) if m["completed_at"] and m["run_started_at"] else None
    return Job(
        id=m["id"],
        seq=m["seq"],
        status=m["status"],
        workflow=m["workflow"],
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        started_at=m["started_at"],
        completed_at=m["completed_at"],
        attempts=m["attempts"],
        prompt_id=m["prompt_id"],
        lease_owner=m["lease_owner"],
        lease_until=m["lease_until"],
        cancel_requested=bool(m["cancel_requested"]),
        progress=m["progress"],
        error=m["error"],
        extra_data=m["extra_data"],
        metadata=m["metadata"],
        execution_s=run_s,
        needs=m["needs"],
    )


def asset_of(m) -> Asset:
    return Asset(
        id=m["id"],
        hash=m["hash"],
        size=m["size"],
        content_type=m["content_type"],
        file_path=m["file_path"],
        created_at=m["created_at"],
        job_id=m["job_id"],
        tags=list(m["tags"] or []),
        remote_uri=m.get("uri"),
    )


def views_of(rows) -> list[WorkerView]:
    return [
        WorkerView(
            r.id,
            None if r.models is None else names_of(r.models),
            frozenset(r.loaded or ()),
            r.job_id is None,
            bool(r.draining),
        )
        for r in rows
    ]


def info_of(row) -> WorkerInfo:
    return WorkerInfo(
        row.id, row.ui_url, row.models, row.loaded or [], row.job_id, bool(row.draining), row.seen_at
    )


class SqlRest:
    webhooks: bool
    postgres: bool
    r: Engine
    _tx: Callable
    _run: Callable
    _read: Callable

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
                },
            )

    async def put_asset(self, asset):
        def run():
            with self._tx(Write.ORDERED) as c:
                self._put_asset(c, asset)

        await self._run(run)

    async def get_asset(self, asset_id):
        def run():
            with self.r.connect() as c:
                row = c.execute(Q.asset_by_id, {"id": asset_id}).first()
            return asset_of(row._mapping) if row else None

        return await self._read(run)

    async def find_blob(self, digest):
        def run():
            with self.r.connect() as c:
                row = c.execute(Q.asset_by_hash, {"hash": digest}).first()
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
