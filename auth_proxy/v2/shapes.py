"""The contract's JSON shapes for jobs, outputs and assets, with the absolute URLs it asks
for built from the host the client used."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from aiohttp import web

from comfy_jobs.model import Asset, Job, JobSummary, Output

URL_TTL_S = 24 * 3600


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


def summary_json(j: JobSummary) -> dict:
    return {
        "id": j.id,
        "status": j.status,
        "created_at": iso(j.created_at),
        "completed_at": iso(j.completed_at),
        "metadata": j.metadata or {},
        "urls": job_urls(j.id),
    }
