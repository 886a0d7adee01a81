"""The records the ledger keeps, as the v2 contract names them, and the values passed
between the service, the ledger and the workers.

A job's states: queued -> running -> succeeded | failed; queued -> canceled | expired;
running -> canceling -> canceled (or succeeded/failed when the run ended first). A lost run
goes back through running with one more attempt; it never leaves a terminal state. The
transitions are the ledger's statements (comfy_jobs/queries.py), each guarded by the state
it starts from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

QUEUED, RUNNING, CANCELING = "queued", "running", "canceling"
SUCCEEDED, FAILED, CANCELED, EXPIRED = "succeeded", "failed", "canceled", "expired"
ACTIVE = (QUEUED, RUNNING, CANCELING)
TERMINAL = (SUCCEEDED, FAILED, CANCELED, EXPIRED)


@dataclass
class Asset:
    id: str
    hash: str  # "blake3:<hex>"
    size: int
    content_type: str
    file_path: str | None
    created_at: float
    job_id: str | None = None
    tags: list[str] = field(default_factory=list)
    remote_uri: str | None = None
    owner: str | None = None  # the account it belongs to (None: from before accounts, the admin's)


@dataclass
class Output:
    node_id: str
    name: str
    type: str  # image, video, audio, text, file, latent
    asset: Asset


@dataclass
class Job:
    id: str
    seq: int
    status: str
    workflow: dict
    created_at: float
    expires_at: float
    started_at: float | None = None
    completed_at: float | None = None
    attempts: int = 0
    prompt_id: str | None = None
    lease_owner: str | None = None
    lease_until: float | None = None
    cancel_requested: bool = False
    progress: dict | None = None
    error: dict | None = None
    extra_data: dict | None = None
    metadata: dict | None = None
    outputs: list[Output] = field(default_factory=list)
    queue_position: int | None = None
    execution_s: float | None = None
    needs: list[str] | None = None  # the model files it loads (placement)
    owner: str | None = None  # the account that submitted it (None: from before accounts, the admin's)
    others_waiting: bool = False  # set by a claim: other claimable jobs were there too


@dataclass(frozen=True)
class JobSummary:
    """A job as a list shows it."""

    id: str
    seq: int
    status: str
    created_at: float
    completed_at: float | None
    metadata: dict | None


@dataclass(frozen=True)
class JobQuery:
    """Which jobs a list wants: newest first, older than the cursor (a job's seq), with this
    status and these metadata labels, at most `limit`; `owner`: only that account's (None:
    everyone's, what an admin sees)."""

    limit: int = 50
    before_seq: int | None = None
    status: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    owner: str | None = None


@dataclass(frozen=True)
class JobPage:
    jobs: list[JobSummary]
    next_cursor: int | None  # the seq to list on from; None: this is the last page


@dataclass(frozen=True)
class Caller:
    """Who asks the job service: an account name (opaque here: a login, a token's owner) and
    whether it is an admin. A member reaches only the jobs and assets it owns; an admin
    reaches everyone's, including those from before accounts (no owner)."""

    user: str
    is_admin: bool = False

    @property
    def scope(self) -> str | None:
        """The owner the ledger filters by, in SQL: None for an admin (no filter)."""
        return None if self.is_admin else self.user


@dataclass(frozen=True)
class IdemKey:
    """An Idempotency-Key, the digest of the request it came with, and whose key it is: each
    account has its own keys (the same key from two people names two requests)."""

    key: str
    body_hash: str
    owner: str | None = None

    @property
    def stored(self) -> str:
        """The key as the ledger keeps it: the owner's and the client's in one fixed-length
        value (the column holds 255 characters, the key alone may take them all)."""
        if self.owner is None:
            return self.key
        return "owner:" + hashlib.sha256(f"{self.owner}\0{self.key}".encode()).hexdigest()


@dataclass(frozen=True)
class Claim:
    """What a heartbeat learns: whether the worker still holds the job, and whether a
    cancel was asked for meanwhile."""

    held: bool
    cancel_requested: bool = False


@dataclass
class WorkerInfo:
    """A worker's own row: what it reports on each beat, and whether it was asked to drain."""

    id: str
    ui_url: str | None = None  # where a gateway relays a pinned browser (None: not pinnable)
    models: list[str] | None = None  # files model_sync placed (folder/path); None: takes every job
    loaded: list[str] = field(default_factory=list)  # the models of the job it ran last
    job_id: str | None = None
    draining: bool = False
    seen_at: float = 0.0


@dataclass(frozen=True)
class Holding:
    """A worker's row once one of its jobs ends, written in the transaction that ends it:
    nobody reads the job ended while its worker still looks busy with it (placement prefers
    an idle worker that has the job's models loaded)."""

    job_id: str | None  # the next job it holds (pipelining), None: idle
    loaded: list[str]  # the models of the job run last (what its ComfyUI has loaded)


@dataclass
class Delivery:
    """A webhook waiting in the outbox."""

    id: int
    job_id: str
    body: dict
    attempts: int
