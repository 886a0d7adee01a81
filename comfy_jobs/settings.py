"""Every environment variable of the job ledger and worker, declared once: name, default,
doc line. `load_settings` reads them once into a frozen object that everything else gets.

docs/api.md lists the same table for users.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from comfy_jobs.errors import ConfigError


@dataclass(frozen=True)
class Var:
    name: str
    default: str
    doc: str


VARS = {v.name: v for v in (
    Var("COMFY_JOBS_DIR", "/data/jobs", "where the ledger (SQLite) and the job assets live"),
    Var("COMFY_JOBS_DATABASE_URL", "", "the ledger's database as an SQLAlchemy URL; empty: "
        "sqlite:///$COMFY_JOBS_DIR/ledger.db"),
    Var("COMFY_JOB_MAX_ATTEMPTS", "2", "how many times a job is submitted to ComfyUI when ComfyUI "
        "loses the run (crash, OOM kill, restart) before it is failed"),
    Var("COMFY_QUEUE_LIMIT", "100", "jobs queued or running at once; one more is answered "
        "429 queue_full; 0: no limit"),
    Var("COMFY_OUTPUTS_TO", "", "oss://bucket/prefix or s3://bucket/prefix: outputs are also "
        "uploaded there, verified, and served from there when the local copy is gone"),
    Var("COMFY_JOB_LEASE_SECONDS", "30", "a worker's claim on a job lasts this long unless "
        "heartbeated; after it, another worker resumes the job"),
    Var("COMFY_JOBS_WORKER", "1", "1: the proxy runs the jobs itself; 0: it only records them "
        "and separate workers run them"),
    Var("COMFY_JOBS_WORKER_ID", "", "this worker's name in the ledger; empty: the host name"),
    Var("COMFY_JOBS_RETENTION_DAYS", "30", "a job's expires_at is this long after its creation"),
    Var("COMFY_WEBHOOK_URL", "", "POST a signed JSON event here when a job reaches a terminal state"),
    Var("COMFY_WEBHOOK_SECRET", "", "the Standard Webhooks secret (whsec_...) that signs them; "
        "required with COMFY_WEBHOOK_URL"),
    Var("COMFY_ASSET_MAX_MB", "1024", "the largest upload POST /api/v2/assets accepts"),
)}


@dataclass(frozen=True)
class JobSettings:
    jobs_dir: Path = Path("/data/jobs")
    database_url: str = ""
    max_attempts: int = 2
    queue_limit: int = 100
    outputs_to: str = ""
    lease_s: float = 30.0
    run_worker: bool = True
    worker_id: str = ""
    retention_days: float = 30.0
    webhook_url: str = ""
    webhook_secret: str = ""
    asset_max_bytes: int = 1024 << 20

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.jobs_dir / 'ledger.db'}"

    @property
    def blobs_dir(self) -> Path:
        return self.jobs_dir / "blobs"


def _parse(name: str, raw: str, kind: Callable, check: Callable[[object], bool], what: str):
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not {what}") from None
    if not check(value):
        raise ConfigError(f"{name}={raw!r} is not {what}")
    return value


def load_settings(environ: dict | None = None) -> JobSettings:
    env = os.environ if environ is None else environ

    def get(name: str) -> str:
        return (env.get(name) or VARS[name].default).strip()

    url, secret = get("COMFY_WEBHOOK_URL"), get("COMFY_WEBHOOK_SECRET")
    if url and not secret.startswith("whsec_"):
        raise ConfigError("COMFY_WEBHOOK_URL needs COMFY_WEBHOOK_SECRET=whsec_<base64>, the "
                          "Standard Webhooks secret receivers verify signatures with")
    outputs_to = get("COMFY_OUTPUTS_TO")
    if outputs_to and not outputs_to.startswith(("oss://", "s3://")):
        raise ConfigError(f"COMFY_OUTPUTS_TO={outputs_to!r}: expected oss://bucket/prefix or s3://bucket/prefix")
    worker = get("COMFY_JOBS_WORKER").lower()
    if worker not in ("0", "1", "true", "false", "yes", "no"):
        raise ConfigError(f"COMFY_JOBS_WORKER={worker!r}: expected 1 or 0")
    positive = "a whole number of at least 1"
    return JobSettings(
        jobs_dir=Path(get("COMFY_JOBS_DIR")),
        database_url=get("COMFY_JOBS_DATABASE_URL"),
        max_attempts=_parse("COMFY_JOB_MAX_ATTEMPTS", get("COMFY_JOB_MAX_ATTEMPTS"), int, lambda v: v >= 1, positive),
        queue_limit=_parse("COMFY_QUEUE_LIMIT", get("COMFY_QUEUE_LIMIT"), int, lambda v: v >= 0,
                           "a whole number (0: no limit)"),
        outputs_to=outputs_to.rstrip("/"),
        lease_s=_parse("COMFY_JOB_LEASE_SECONDS", get("COMFY_JOB_LEASE_SECONDS"), float, lambda v: v >= 3,
                       "a number of seconds of at least 3"),
        run_worker=worker in ("1", "true", "yes"),
        worker_id=get("COMFY_JOBS_WORKER_ID") or socket.gethostname(),
        retention_days=_parse("COMFY_JOBS_RETENTION_DAYS", get("COMFY_JOBS_RETENTION_DAYS"), float,
                              lambda v: v > 0, "a positive number of days"),
        webhook_url=url,
        webhook_secret=secret,
        asset_max_bytes=_parse("COMFY_ASSET_MAX_MB", get("COMFY_ASSET_MAX_MB"), int, lambda v: v >= 1, positive) << 20,
    )
