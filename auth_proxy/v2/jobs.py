"""The v2 job routes: submit, list, get, cancel, the workflow behind a job, and the live
SSE stream; each reads the request, calls the job service and writes its answer."""

from __future__ import annotations

import json
from collections import Counter

from aiohttp import web

from auth_proxy import audit
from auth_proxy.services import GATE, WHO
from auth_proxy.v2.shapes import job_json, output_json, summary_json
from auth_proxy.v2.wire import caller_of, read_json
from comfy_jobs.errors import Malformed
from comfy_jobs.events import Event
from comfy_jobs.model import Caller, Job, JobQuery, Output
from comfy_jobs.service import JobsService

MAX_LIMIT = 100
MAX_SEQ = (1 << 63) - 1  # the database's integers; a larger cursor names no job


def job_query(q) -> JobQuery:
    """A list's query parameters: limit, cursor (from next_cursor), status, metadata[key]."""
    try:
        limit = int(q.get("limit", "50"))
        before = int(q["cursor"]) if "cursor" in q else None
    except ValueError:
        raise Malformed("limit and cursor must be whole numbers") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise Malformed(f"limit must be between 1 and {MAX_LIMIT}")
    if before is not None and not 0 <= before <= MAX_SEQ:
        raise Malformed("cursor is not one this server gave; send next_cursor as it came")
    metadata = {k[9:-1]: v for k, v in q.items() if k.startswith("metadata[") and k.endswith("]")}
    return JobQuery(limit, before, q.get("status") or None, metadata)


class JobRoutes:
    def __init__(self, service: JobsService):
        self.svc = service

    async def submit(self, request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key")
        caller = caller_of(request)
        job, replayed = await self.svc.submit(caller, await read_json(request), key)
        if not replayed:
            # who ran which workflow (auth_proxy/audit.py), as for a native prompt
            classes = Counter(str(n.get("class_type")) for n in job.workflow.values() if isinstance(n, dict))
            audit.record(
                request.config_dict[GATE], "job", user=caller.user, job_id=job.id, classes=dict(classes)
            )
        headers = {"Location": f"/api/v2/jobs/{job.id}"}
        if key is not None:
            headers["Idempotency-Replayed"] = "true" if replayed else "false"
        return web.json_response(job_json(request, job), status=201, headers=headers)

    async def list(self, request: web.Request) -> web.Response:
        page = await self.svc.jobs(caller_of(request), job_query(request.query))
        body: dict[str, object] = {"jobs": [summary_json(j) for j in page.jobs]}
        if page.next_cursor is not None:
            body["next_cursor"] = str(page.next_cursor)
        return web.json_response(body)

    async def get(self, request: web.Request, id: str) -> web.Response:  # noqa: A002 - the contract's name
        return web.json_response(job_json(request, await self.svc.job(caller_of(request), id)))

    async def workflow(self, request: web.Request, id: str) -> web.Response:  # noqa: A002
        job = await self.svc.job(caller_of(request), id)
        return web.json_response({"workflow": job.workflow, "format": "api"})

    async def cancel(self, request: web.Request, id: str) -> web.Response:  # noqa: A002
        return web.json_response(job_json(request, await self.svc.cancel(caller_of(request), id)))

    async def events(self, request: web.Request, id: str) -> web.StreamResponse:  # noqa: A002
        """Live push only, as the contract says (comfy_jobs/events.py: what is sent when)."""
        caller = caller_of(request)
        job = await self.svc.job(caller, id)  # an unknown job (or another's) is a 404, before the stream
        with self.svc.hub.streams.slot(client_of(request)):
            return await self._stream(request, caller, job)

    async def _stream(self, request: web.Request, caller: Caller, job: Job) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await resp.prepare(request)
        try:
            async for event in self.svc.events(caller, job):
                await resp.write(sse(request, job.id, event))
            await resp.write_eof()
        except ConnectionResetError:
            pass  # the client went away; nothing to clean up
        return resp


def client_of(request: web.Request) -> str:
    """Whose stream this is: the token or the browser session it came with."""
    who = request[WHO]
    return who.token_digest or who.sid or f"{who.via}:{who.user}"


def sse(request: web.Request, job_id: str, event: Event) -> bytes:
    if event.kind == "keepalive":
        return b": keepalive\n\n"
    data = output_json(request, job_id, event.data) if isinstance(event.data, Output) else event.data
    return (
        b"event: "
        + event.kind.encode()
        + b"\ndata: "
        + json.dumps(data, separators=(",", ":")).encode()
        + b"\n\n"
    )
