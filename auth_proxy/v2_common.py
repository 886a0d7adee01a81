"""What the Comfy API v2 routes share: the contract's error envelope, its JSON shapes for
jobs, outputs and assets, and the route table's matcher."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

from aiohttp import web

from comfy_jobs.model import Asset, Job, Output

URL_TTL_S = 24 * 3600
# The gate's own refusals, in the contract's codes.
CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    429: "too_many_requests",
    503: "unavailable",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict | None = None, **headers: str):
        super().__init__(message)
        self.status, self.code, self.message, self.details, self.headers = (
            status,
            code,
            message,
            details,
            headers,
        )

    def response(self) -> web.Response:
        return error(self.status, self.code, self.message, self.details, **self.headers)


def error(status: int, code: str, message: str, details: dict | None = None, **headers: str) -> web.Response:
    body = {"error": {"code": code, "message": message, "details": details}}
    return web.json_response(body, status=status, headers=headers)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def origin(request: web.Request) -> str:
    """scheme://host the client used, for the absolute content URLs the contract asks for.
    Behind a trusted proxy the gate has already re-addressed the request to the forwarded
    scheme and host (auth_proxy/forwarded.py, the nearest hop's values); anyone else's
    X-Forwarded-* are their own claims, and SDKs follow these URLs with their token."""
    return f"{request.scheme}://{request.host}"


def asset_json(request: web.Request, a: Asset, created_new: bool | None = None) -> dict:
    d = {
        "id": a.id,
        "hash": a.hash,
        "size_bytes": a.size,
        "content_type": a.content_type,
        "file_path": a.file_path,
        "created_at": iso(a.created_at),
        "url": f"{origin(request)}/api/v2/assets/{a.id}/content",
        "url_expires_at": iso(time.time() + URL_TTL_S),
        "job_id": a.job_id,
        "expires_at": None,
        "tags": a.tags,
    }
    if created_new is not None:
        d["created_new"] = created_new
    return d


def output_json(request: web.Request, job_id: str, o: Output) -> dict:
    a = asset_json(request, o.asset)
    return {
        "node_id": o.node_id,
        "name": o.name,
        "type": o.type,
        "content_type": a["content_type"],
        "size_bytes": a["size_bytes"],
        "id": a["id"],
        "hash": a["hash"],
        "url": a["url"],
        "url_expires_at": a["url_expires_at"],
        "job_id": job_id,
    }


def job_urls(job_id: str) -> dict:
    base = f"/api/v2/jobs/{job_id}"
    return {"self": base, "events": base + "/events", "cancel": base + "/cancel"}


def job_json(request: web.Request, job: Job) -> dict:
    queue_ms = int(((job.started_at or time.time()) - job.created_at) * 1000)
    exec_ms = int(job.execution_s * 1000) if job.execution_s is not None else None
    return {
        "id": job.id,
        "status": job.status,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "completed_at": iso(job.completed_at),
        "expires_at": iso(job.expires_at),
        "queue_position": job.queue_position,
        "progress": job.progress,
        "outputs": [output_json(request, job.id, o) for o in job.outputs],
        "error": job.error,
        "metrics": {"queue_ms": queue_ms, "execution_ms": exec_ms},
        "attempts": job.attempts,
        "metadata": job.metadata or {},
        "urls": job_urls(job.id),
    }


def json_bytes(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class Routes:
    """A route table `(method, "/api/v2/x/{name}", handler)` matched on the normalised path;
    handlers get the request and the path's parts as keyword arguments."""

    def __init__(self, table: Sequence[tuple[str, str, Callable]]):
        self.table = [
            (
                m,
                p.count("{"),
                re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(p)) + r"\Z"),
                h,
            )
            for m, p, h in table
        ]

    def match(self, method: str, path: str):
        """(handler, params) | ("405", allowed methods) | None. A literal path beats a
        pattern: /api/v2/assets/from-hash is not the asset "from-hash"."""
        found = []
        for m, n, rx, h in self.table:
            hit = rx.match(path)
            if hit is not None:
                found.append((n, m, hit, h))
        if not found:
            return None
        fewest = min(f[0] for f in found)
        found = [f for f in found if f[0] == fewest]
        for _, m, hit, h in found:
            if m == method or (method == "HEAD" and m == "GET"):
                return h, hit.groupdict()
        return "405", [f[1] for f in found]
