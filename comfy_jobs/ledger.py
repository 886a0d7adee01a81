"""The storage interface of the job ledger: what the API routes and the workers need, and
nothing about how it is stored. `sqlledger.SqlLedger` implements it for SQLite (the default,
on the data volume) and PostgreSQL (`COMFY_JOBS_DATABASE_URL`, shared by a cluster's
gateways and workers) with the same statements.

Every method is a coroutine: the routes and the worker run on an event loop, and the
backends do their blocking database work off it.

Owners: a job or asset belongs to the account that made it (NULL for rows from before
accounts: the admin's). `visible_to` filters by owner in SQL: None reads every row (an
admin, or the worker), an account name only that account's rows, so another's row reads
exactly as a missing one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from comfy_jobs.model import (
    Asset,
    Claim,
    Delivery,
    Holding,
    IdemKey,
    Job,
    JobPage,
    JobQuery,
    Output,
    WorkerInfo,
)


class Ledger(Protocol):
    # --- jobs, as the API sees them ----------------------------------------------------
    async def create_job(
        self,
        job_id: str,
        workflow: dict,
        extra_data: dict | None,
        metadata: dict | None,
        idem: IdemKey | None,
        queue_limit: int,
        retention_s: float,
        owner: str | None = None,
        waiting_limit: int | None = None,
    ) -> tuple[Job, bool]:
        """Record a queued job of `owner` (durably, before answering). Returns (job,
        replayed): an earlier job with the same key (the owner's) and body is returned as it
        is. Raises IdempotencyKeyReuse (same key, other body), QueueFull (COMFY_QUEUE_LIMIT)
        or TooManyWaiting (the owner has `waiting_limit` queued jobs already)."""

    async def get_job(self, job_id: str, visible_to: str | None = None) -> Job | None: ...

    async def list_jobs(self, query: JobQuery) -> JobPage:
        """Newest first; the filters are applied by the database, so a page is right over
        any number of jobs."""

    async def request_cancel(self, job_id: str, visible_to: str | None = None) -> Job | None:
        """A queued job is canceled at once; a running one becomes canceling."""

    async def fingerprints(self, job_ids: Sequence[str]) -> dict[str, tuple]:
        """For each job: a value that changes whenever what its event stream sends does
        (status, queue position, progress, attempts, outputs)."""

    async def counts(self) -> dict[str, int]:
        """Jobs per non-terminal status, for /metrics and the queue limit."""

    async def recent_execution_s(self) -> list[float]:
        """How long the last successful runs took, newest first."""

    # --- the worker's side ---------------------------------------------------------------
    async def claim(self, worker: str, lease_s: float, prompt_id: str | None = None) -> Job | None:
        """A job that is queued, or running under a lease that ran out (its worker died), now
        leased to `worker`: the oldest of the owner with the fewest jobs running (a fair
        share: one person's fifty waiting jobs do not hold another's one behind them). With `prompt_id`, a job never tried comes back with
        its first attempt recorded under that id (as start_attempt would, in the same
        transaction); a job tried before keeps its last attempt's id. `others_waiting` says
        whether the claim saw other claimable jobs."""

    async def forget_own_leases(self, worker: str) -> int:
        """At a worker's start: jobs it held before it restarted can be resumed at once."""

    async def attempts_of(self, job_id: str) -> list[dict]: ...

    async def heartbeat(self, job_id: str, worker: str, lease_s: float) -> Claim: ...

    async def release(self, job_id: str, worker: str) -> None:
        """Give a job back to the queue untouched (the worker is shutting down)."""

    async def count_error(self, job_id: str, worker: str) -> int | None:
        """An unexpected error while the worker held the job counts as an attempt (so a job
        that always fails so ends, failed, after COMFY_JOB_MAX_ATTEMPTS instead of going
        round forever); the attempts so far, or None if the worker no longer holds it."""

    async def start_attempt(self, job_id: str, worker: str, prompt_id: str) -> int:
        """Record the next submission to ComfyUI before it is made; returns its number. The
        job's outputs so far (a lost run's) are dropped: the new run saves its own."""

    async def abort_attempt(self, job_id: str, worker: str, prompt_id: str) -> None:
        """The submission certainly did not reach ComfyUI: it does not count."""

    async def hand_back(
        self, job_id: str, worker: str, prompt_id: str | None, holding: Holding | None = None
    ) -> None:
        """A draining worker gives back a job whose run never started (deleted from ComfyUI's
        queue before its turn): the attempt `prompt_id` (if any) is dropped as if never made,
        and the job is queued again for any worker; `holding`, when given, is the worker's
        row from then on, in the same transaction."""

    async def end_attempt(self, job_id: str, prompt_id: str, outcome: str, reason: str) -> None: ...

    async def set_progress(self, job_id: str, worker: str, progress: dict) -> None: ...

    async def add_output(self, job_id: str, node_id: str, name: str, kind: str, asset: Asset) -> bool:
        """Commit one output (once per node and name); False if it was already there."""

    async def finish(
        self,
        job_id: str,
        worker: str,
        status: str,
        error: dict | None,
        progress: dict | None = None,
        attempt: tuple[str, str, str] | None = None,
        outputs: Sequence[Output] = (),
        holding: Holding | None = None,
    ) -> bool:
        """Move a job the worker holds to a terminal state, in one transaction with its last
        progress, the end of its attempt (prompt_id, outcome, reason), the outputs not
        committed yet (each once per node and name) and the worker's row from then on
        (`holding`), when given; False if it no longer holds the job (and only the worker's
        row is written)."""

    # --- assets ---------------------------------------------------------------------------
    async def put_asset(self, asset: Asset) -> None: ...

    async def get_asset(self, asset_id: str, visible_to: str | None = None) -> Asset | None: ...

    async def find_blob(self, digest: str, visible_to: str | None = None) -> Asset | None:
        """An asset over the blob with this hash (the blob exists), or None; with
        `visible_to`, only that account's (bytes only another holds read as unknown)."""

    async def set_remote(self, digest: str, uri: str) -> None: ...

    async def idem_lookup(self, scope: str, idem: IdemKey) -> str | None:
        """The id recorded for this key in `scope`; raises IdempotencyKeyReuse for another body."""

    async def idem_record(self, scope: str, idem: IdemKey, ref_id: str) -> None: ...

    # --- webhook outbox ----------------------------------------------------------------
    async def due_deliveries(self, now: float, limit: int) -> list[Delivery]: ...

    async def delivery_done(self, delivery_id: int, ok: bool, error: str, retry_at: float | None) -> None: ...

    # --- workers (placement, drain, the gateways' UI pinning) ---------------------------
    async def wait_for_work(self, timeout: float) -> None:
        """Until a job may have become claimable anywhere (another process's NOTIFY), or timeout."""

    async def worker_beat(self, info: WorkerInfo, starting: bool = False) -> bool:
        """Record the worker's report; True when it has been asked to drain."""

    async def request_drain(self, worker_id: str) -> bool:
        """Ask a worker to stop claiming (`comfyctl drain`); False if no such worker."""

    async def forget_worker(self, worker_id: str) -> None: ...

    async def worker(self, worker_id: str) -> WorkerInfo | None: ...

    async def workers(self, live_s: float) -> list[WorkerInfo]:
        """Workers heard of within the last `live_s` seconds."""

    async def pin(self, key: str, live: Sequence[WorkerInfo]) -> str | None:
        """The worker a browser session's UI traffic goes to, the same from every gateway."""

    async def close(self) -> None: ...


def open_ledger(url: str, webhooks: bool = False) -> Ledger:
    """The ledger at `url` (an SQLAlchemy URL). `webhooks`: terminal states also enqueue a
    webhook delivery in the same transaction, so none is lost to a crash."""
    from comfy_jobs.sqlledger import SqlLedger

    return SqlLedger(url, webhooks=webhooks)
