"""The Comfy API v2 job routes: submit, list, get, cancel, the workflow behind a job, and
the live SSE stream. The contract: spec/openapi.yaml in Comfy-Org/comfy-api-proxy."""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
import time
import uuid

from aiohttp import web

from auth_proxy.v2_common import ApiError, iso, job_json, job_urls, json_bytes
from comfy_jobs.errors import IdempotencyKeyReuse
from comfy_jobs.ledger import IdemKey, QueueFull
from comfy_jobs.model import TERMINAL
from comfy_jobs.workflow import Invalid, asset_refs, check_body, check_graph, ref_id

log = logging.getLogger(__name__)
MAX_BODY = 32 << 20  # a workflow with embedded data; the gate's 1 MiB is for its forms
KEEPALIVE_S = 15.0


async def read_json_body(request: web.Request, limit: int = MAX_BODY):
    data = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        data += chunk
        if len(data) > limit:
            raise ApiError(422, "invalid_request", f"the body is over {limit >> 20} MiB")
    try:
        return json.loads(data or b"null")
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
        raise ApiError(422, "invalid_request", "the body is not valid JSON") from None


def idem_key(request: web.Request, body) -> IdemKey | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isascii() or any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise ApiError(422, "invalid_request", "Idempotency-Key must be 1-255 printable ASCII characters")
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return IdemKey(key, digest)


class JobRoutes:
    def __init__(self, service):
        self.svc = service

    async def _job(self, job_id: str):
        job = await self.svc.ledger.get_job(job_id)
        if job is None:
            raise ApiError(404, "not_found", f"no job {job_id}")
        return job

    async def submit(self, request: web.Request) -> web.Response:
        body = await read_json_body(request)
        try:
            workflow, extra, meta = check_body(body)
            classes = await self.svc.known_classes()
            if classes is not None:
                check_graph(workflow, classes)
        except Invalid as exc:
            raise ApiError(422, exc.code, exc.message, exc.details) from None
        for node_id, name, ref in asset_refs(workflow):
            rid = ref_id(ref)
            if rid is None or await self.svc.ledger.get_asset(rid) is None:
                raise ApiError(
                    422,
                    "missing_asset",
                    f"node {node_id} input {name!r}: no asset {rid!r}; upload it "
                    "with POST /api/v2/assets first",
                    {"node_id": node_id, "input": name, "id": rid},
                )
        idem = idem_key(request, body)
        try:
            job, replayed = await self.svc.ledger.create_job(
                "job_" + uuid.uuid4().hex,
                workflow,
                extra,
                meta,
                idem,
                self.svc.s.queue_limit,
                self.svc.s.retention_days * 86400,
            )
        except IdempotencyKeyReuse:
            raise ApiError(
                422,
                "idempotency_key_reuse",
                "this Idempotency-Key was used with a different body; use a new key for a new job",
            ) from None
        except QueueFull as exc:
            raise ApiError(
                429,
                "queue_full",
                f"{exc}; retry later",
                {"depth": exc.depth, "limit": exc.limit},
                **{"Retry-After": str(await self.retry_after(exc.depth - exc.limit + 1))},
            ) from None
        if not replayed:
            self.svc.submitted()
            log.info("job %s queued (%d nodes)", job.id, len(workflow))
        headers = {"Location": f"/api/v2/jobs/{job.id}"}
        if idem is not None:
            headers["Idempotency-Replayed"] = "true" if replayed else "false"
        return web.json_response(job_json(request, job), status=201, headers=headers)

    async def retry_after(self, ahead: int) -> int:
        """Seconds until about `ahead` jobs have finished, from recent run times."""
        recent = await self.svc.ledger.recent_execution_s()
        per_job = statistics.median(recent) if recent else 10.0
        return int(min(600, max(1, per_job * max(ahead, 1))))

    async def list(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            limit = int(q.get("limit", "50"))
            before = int(q["cursor"]) if "cursor" in q else None
        except ValueError:
            raise ApiError(400, "invalid_request", "limit and cursor must be whole numbers") from None
        if not 1 <= limit <= 100:
            raise ApiError(400, "invalid_request", "limit must be between 1 and 100")
        wanted = {k[9:-1]: v for k, v in q.items() if k.startswith("metadata[") and k.endswith("]")}
        jobs = await self.svc.ledger.list_jobs(limit if not wanted else 1000, before, q.get("status"))
        if wanted:
            jobs = [j for j in jobs if all((j.metadata or {}).get(k) == v for k, v in wanted.items())][:limit]
        items = [
            {
                "id": j.id,
                "status": j.status,
                "created_at": iso(j.created_at),
                "completed_at": iso(j.completed_at),
                "metadata": j.metadata or {},
                "urls": job_urls(j.id),
            }
            for j in jobs
        ]
        body: dict[str, object] = {"jobs": items}
        if len(jobs) == limit:
            body["next_cursor"] = str(jobs[-1].seq)
        return web.json_response(body)

    async def get(self, request: web.Request, id: str) -> web.Response:  # noqa: A002 - the contract's name
        return web.json_response(job_json(request, await self._job(id)))

    async def workflow(self, request: web.Request, id: str) -> web.Response:  # noqa: A002
        job = await self._job(id)
        return web.json_response({"workflow": job.workflow, "format": "api"})

    async def cancel(self, request: web.Request, id: str) -> web.Response:  # noqa: A002
        job = await self.svc.ledger.request_cancel(id)
        if job is None:
            raise ApiError(404, "not_found", f"no job {id}")
        if job.status == "canceling":
            self.svc.cancel_requested(id)
        self.svc.hub.notify(id)
        return web.json_response(job_json(request, job))

    async def events(self, request: web.Request, id: str) -> web.StreamResponse:  # noqa: A002
        """Live push only, as the contract says: a snapshot on connect (status, latest
        progress, latest preview), then changes, until the terminal status. Changes are read
        from the ledger (so a job run by another process streams too); the hub only wakes
        the loop early and holds the previews."""
        job = await self._job(id)
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await resp.prepare(request)

        async def send(event: str, data: dict) -> None:
            await resp.write(b"event: " + event.encode() + b"\ndata: " + json_bytes(data) + b"\n\n")

        view = job_json(request, job)
        last_status = (job.status, job.queue_position)
        await send("status", {"status": job.status, "queue_position": job.queue_position})
        last_progress = job.progress
        if job.progress:
            await send("progress", job.progress)
        preview_n = 0
        if id in self.svc.hub.previews:
            preview_n, preview = self.svc.hub.previews[id]
            await send("preview", preview)
        sent = {(o["node_id"], o["name"]) for o in view["outputs"]}
        last_write = time.monotonic()
        try:
            while job.status not in TERMINAL:
                await self.svc.hub.wait(id, 1.0)
                job = await self._job(id)
                view = job_json(request, job)
                for o in view["outputs"]:
                    if (o["node_id"], o["name"]) not in sent:
                        sent.add((o["node_id"], o["name"]))
                        await send("output", o)
                if job.progress != last_progress and job.progress:
                    last_progress = job.progress
                    await send("progress", job.progress)
                if id in self.svc.hub.previews and self.svc.hub.previews[id][0] != preview_n:
                    preview_n, preview = self.svc.hub.previews[id]
                    await send("preview", preview)
                if (job.status, job.queue_position) != last_status:
                    last_status = (job.status, job.queue_position)
                    await send("status", {"status": job.status, "queue_position": job.queue_position})
                    last_write = time.monotonic()
                elif time.monotonic() - last_write > KEEPALIVE_S:
                    await resp.write(b": keepalive\n\n")
                    last_write = time.monotonic()
            await resp.write_eof()
        except ConnectionResetError:
            pass  # the client went away; nothing to clean up
        return resp
