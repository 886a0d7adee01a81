"""The ledger's tables, in SQLAlchemy Core so one definition serves SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# 2: jobs.needs (the model files a job loads, for placement), the workers and pins tables
# 3: jobs.owner and assets.owner (the account; NULL: from before accounts, the admin's)
SCHEMA_VERSION = 3
meta = MetaData()

schema_info = Table("schema_info", meta, Column("version", Integer, nullable=False))

jobs = Table(
    "jobs",
    meta,
    # seq orders the queue and the listing (ids are random, creation times can tie)
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("workflow", JSON, nullable=False),
    Column("extra_data", JSON),
    Column("metadata", JSON),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("started_at", Float),
    Column("completed_at", Float),
    Column("attempts", Integer, nullable=False, default=0),
    Column("prompt_id", String(64)),
    Column("lease_owner", String(200)),
    Column("lease_until", Float),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("progress", JSON),
    Column("error", JSON),
    Column("run_started_at", Float),
    # the model files the workflow loads (placement: workers that have them on disk)
    Column("needs", JSON),
    Column("owner", String(200)),  # the account that submitted it; NULL: the admin's (older rows)
)
Index("jobs_status_seq", jobs.c.status, jobs.c.seq)
Index("jobs_owner_seq", jobs.c.owner, jobs.c.seq)  # a member's list, waiting jobs, fair share

attempts = Table(
    "attempts",
    meta,
    Column("job_id", String(64), ForeignKey("jobs.id"), nullable=False),
    Column("n", Integer, nullable=False),
    Column("prompt_id", String(64), nullable=False, unique=True),
    Column("worker", String(200), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("outcome", String(32)),  # lost, rejected, failed, interrupted, canceled, succeeded
    # why it ended; for a success, the history's outputs (JSON), kept until they are fetched,
    # so that a worker that dies meanwhile leaves the next one the files, not a rerun
    Column("reason", Text),
)

assets = Table(
    "assets",
    meta,
    Column("id", String(64), primary_key=True),
    Column("hash", String(80), nullable=False, index=True),
    Column("size", BigInteger, nullable=False),  # videos pass 2 GiB
    Column("content_type", String(200), nullable=False),
    Column("file_path", Text),
    Column("created_at", Float, nullable=False),
    Column("job_id", String(64)),
    Column("tags", JSON),
    Column("owner", String(200)),  # the uploader, or the job's owner for an output; NULL: the admin's
)

# One row per blob that was mirrored to object storage (COMFY_OUTPUTS_TO).
remotes = Table(
    "remotes",
    meta,
    Column("hash", String(80), primary_key=True),
    Column("uri", Text, nullable=False),
)

outputs = Table(
    "outputs",
    meta,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(64), ForeignKey("jobs.id"), nullable=False, index=True),
    Column("node_id", String(64), nullable=False),
    Column("name", Text, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("asset_id", String(64), ForeignKey("assets.id"), nullable=False),
    UniqueConstraint("job_id", "node_id", "name"),
)

idempotency = Table(
    "idempotency",
    meta,
    Column("scope", String(16), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("body_hash", String(64), nullable=False),
    Column("ref_id", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
)

deliveries = Table(
    "deliveries",
    meta,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(64), nullable=False),
    Column("body", JSON, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_at", Float, nullable=False),
    Column("done", Boolean, nullable=False, default=False),
    Column("last_error", Text),
)
Index("deliveries_due", deliveries.c.done, deliveries.c.next_at)

# One row per worker, written by the worker itself (its heartbeat): what placement and the
# gateway's UI pinning read. `models`: the files model_sync placed on its disk (NULL: it
# does not report them and takes every job); `loaded`: the models of the job it ran last.
workers = Table(
    "workers",
    meta,
    Column("id", String(200), primary_key=True),
    Column("ui_url", Text),  # where a gateway relays a pinned browser's requests
    Column("models", JSON),
    Column("loaded", JSON),
    Column("job_id", String(64)),  # the job it holds now
    Column("draining", Boolean, nullable=False, default=False),
    Column("started_at", Float, nullable=False),
    Column("seen_at", Float, nullable=False),
)

# A browser session (or token) pinned to one worker's UI, shared by every gateway replica.
pins = Table(
    "pins",
    meta,
    Column("key", String(64), primary_key=True),
    Column("worker_id", String(200), nullable=False),
    Column("at", Float, nullable=False),
)

# What upgrades an older ledger in place (create_all adds missing tables, not columns or the
# indexes of tables that exist). Rows from before owners keep NULL: the admin's.
MIGRATIONS = {
    1: ["ALTER TABLE jobs ADD COLUMN needs JSON"],
    2: [
        "ALTER TABLE jobs ADD COLUMN owner VARCHAR(200)",
        "ALTER TABLE assets ADD COLUMN owner VARCHAR(200)",
        "CREATE INDEX IF NOT EXISTS jobs_owner_seq ON jobs (owner, seq)",
    ],
}
