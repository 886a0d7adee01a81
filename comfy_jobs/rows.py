"""The ledger's rows as the records the rest of comfy_jobs uses (model.py, placement's views)."""

from __future__ import annotations

from comfy_jobs.model import Asset, Job, WorkerInfo
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
        owner=m["owner"],
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
        owner=m["owner"],
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
