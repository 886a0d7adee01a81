"""The job state machine and the records the ledger keeps, as the v2 contract names them.

queued -> running -> succeeded | failed; queued -> canceled | expired;
running -> canceling -> canceled (or succeeded/failed when the run ended first).
A lost run goes back through running with one more attempt; it never leaves a terminal state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

QUEUED, RUNNING, CANCELING = "queued", "running", "canceling"
SUCCEEDED, FAILED, CANCELED, EXPIRED = "succeeded", "failed", "canceled", "expired"
ACTIVE = (QUEUED, RUNNING, CANCELING)
TERMINAL = (SUCCEEDED, FAILED, CANCELED, EXPIRED)

TRANSITIONS = {
    QUEUED: {RUNNING, CANCELED, FAILED, EXPIRED},
    RUNNING: {SUCCEEDED, FAILED, CANCELING},
    CANCELING: {CANCELED, SUCCEEDED, FAILED},
}


def allowed(old: str, new: str) -> bool:
    return new in TRANSITIONS.get(old, set())


@dataclass
class JobError:
    code: str
    message: str
    node_id: str | None = None
    class_type: str | None = None
    traceback: str | None = None
    details: dict | None = None

    def to_dict(self) -> dict:
        d: dict[str, object] = {
            "code": self.code,
            "message": self.message,
            "node_id": self.node_id,
            "class_type": self.class_type,
            "traceback": self.traceback,
        }
        if self.details:
            d["details"] = self.details
        return d


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

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


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
    status and these metadata labels, at most `limit`."""

    limit: int = 50
    before_seq: int | None = None
    status: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class JobPage:
    jobs: list[JobSummary]
    next_cursor: int | None  # the seq to list on from; None: this is the last page


@dataclass(frozen=True)
class IdemKey:
    """An Idempotency-Key and the digest of the request it came with."""

    key: str
    body_hash: str


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


@dataclass
class Delivery:
    """A webhook waiting in the outbox."""

    id: int
    job_id: str
    body: dict
    attempts: int
