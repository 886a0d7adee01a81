"""The ledger's statements, built once with bound parameters.

Why prebuilt: building a SQLAlchemy Core statement costs about ten times what executing a
cached one does (coercing every clause and computing its cache key); a profile of the ledger
showed that construction, not the database, took most of each job's bookkeeping. Built
once here, each call only binds its values, and SQLAlchemy compiles each statement once per
dialect. They are dialect-neutral: `FOR UPDATE SKIP LOCKED` compiles on PostgreSQL and is
left out on SQLite (where BEGIN IMMEDIATE serialises writers anyway).
"""

from __future__ import annotations

from sqlalchemy import and_, bindparam, case, delete, func, insert, or_, select, update

from comfy_jobs import schema as S
from comfy_jobs.model import ACTIVE, CANCELED, CANCELING, EXPIRED, QUEUED, RUNNING, SUCCEEDED

J, A, OUT, AS, R = S.jobs, S.attempts, S.outputs, S.assets, S.remotes
W, P, D, IDEM = S.workers, S.pins, S.deliveries, S.idempotency
HELD_STATES = (RUNNING, CANCELING)


def _held():
    return and_(
        J.c.id == bindparam("job_id"), J.c.lease_owner == bindparam("worker"), J.c.status.in_(HELD_STATES)
    )


def _claimable():
    """Queued, or running under a lease that ran out (its worker died)."""
    return or_(J.c.status == QUEUED, and_(J.c.status.in_(HELD_STATES), J.c.lease_until < bindparam("now")))


# --- idempotency ---------------------------------------------------------------------------
idem_get = select(IDEM).where(IDEM.c.scope == bindparam("scope"), IDEM.c.key == bindparam("key"))
idem_drop = delete(IDEM).where(IDEM.c.scope == bindparam("scope"), IDEM.c.key == bindparam("key"))
idem_put = insert(IDEM).values(
    scope=bindparam("scope"),
    key=bindparam("key"),
    body_hash=bindparam("body_hash"),
    ref_id=bindparam("ref_id"),
    created_at=bindparam("created_at"),
)

# --- jobs, as the API sees them --------------------------------------------------------------
depth = select(func.count()).select_from(J).where(J.c.status.in_(ACTIVE))
job_put = (
    insert(J)
    .values(
        id=bindparam("id"),
        status=QUEUED,
        workflow=bindparam("workflow"),
        extra_data=bindparam("extra_data"),
        metadata=bindparam("metadata"),
        created_at=bindparam("created_at"),
        expires_at=bindparam("expires_at"),
        attempts=0,
        cancel_requested=False,
        needs=bindparam("needs"),
        owner=bindparam("owner"),
    )
    .returning(J.c.seq)
)
# an account's jobs waiting to start (its limit of waiting jobs)
waiting_of = select(func.count()).select_from(J).where(J.c.status == QUEUED, J.c.owner == bindparam("owner"))
# the list's columns, newest first; the filters of each call are added to it
listing = select(J.c.id, J.c.seq, J.c.status, J.c.created_at, J.c.completed_at, J.c["metadata"]).order_by(
    J.c.seq.desc()
)
job_by_id = select(J).where(J.c.id == bindparam("job_id"))
# the same, only if `owner` owns it: another's job reads as no job
job_by_id_of = job_by_id.where(J.c.owner == bindparam("owner"))
ahead = select(func.count()).select_from(J).where(J.c.status == QUEUED, J.c.seq < bindparam("seq"))
outputs_of = (
    select(OUT, AS, R.c.uri)
    .join(AS, AS.c.id == OUT.c.asset_id)
    .outerjoin(R, R.c.hash == AS.c.hash)
    .where(OUT.c.job_id == bindparam("job_id"))
    .order_by(OUT.c.seq)
)
cancel_queued = (
    update(J)
    .where(J.c.id == bindparam("job_id"), J.c.status == QUEUED)
    .values(status=CANCELED, completed_at=bindparam("now"), lease_owner=None, lease_until=None)
    .returning(J.c.seq)
)
cancel_running = (
    update(J)
    .where(J.c.id == bindparam("job_id"), J.c.status == RUNNING)
    .values(status=CANCELING, cancel_requested=True)
)
# What a live event stream sends, in one row per job: read for every streamed job at once,
# so that an open stream costs nothing while its job does not change.
_AHEAD = J.alias("ahead")
fingerprints = select(
    J.c.id,
    J.c.status,
    J.c.progress,
    J.c.attempts,
    select(func.count()).select_from(OUT).where(OUT.c.job_id == J.c.id).scalar_subquery(),
    select(func.count())
    .select_from(_AHEAD)
    .where(_AHEAD.c.status == QUEUED, _AHEAD.c.seq < J.c.seq)
    .scalar_subquery(),
).where(J.c.id.in_(bindparam("ids", expanding=True)))
counts = select(J.c.status, func.count()).where(J.c.status.in_(ACTIVE)).group_by(J.c.status)
recent = (
    select(J.c.completed_at - J.c.run_started_at)
    .where(J.c.status == SUCCEEDED, J.c.run_started_at.is_not(None))
    .order_by(J.c.seq.desc())
    .limit(20)
)

# --- the worker's side ---------------------------------------------------------------------
expire = (
    update(J)
    .where(J.c.status == QUEUED, J.c.expires_at < bindparam("now"))
    .values(status=EXPIRED, completed_at=bindparam("now"))
    .returning(J.c.id)
)
# The few oldest claimable jobs, locked for this transaction only; a worker claiming at the
# same moment skips them (and looks at the next ones) instead of waiting for the lock.
_candidates = (
    select(J.c.seq, J.c.needs, J.c.created_at)
    .where(_claimable())
    .order_by(J.c.seq)
    .limit(bindparam("n"))
    .with_for_update(skip_locked=True)
)
candidates_of = _candidates.where(J.c.owner == bindparam("owner"))
candidates_of_nobody = _candidates.where(J.c.owner.is_(None))  # from before owners (the admin's)
# Fair share: each owner with claimable jobs, with its oldest; and the jobs each owner has
# running under a live lease. A claim takes from the owner with the fewest running.
owners_waiting = select(J.c.owner, func.min(J.c.seq).label("oldest")).where(_claimable()).group_by(J.c.owner)
owners_running = (
    select(J.c.owner, func.count())
    .where(J.c.status.in_(HELD_STATES), J.c.lease_until >= bindparam("now"))
    .group_by(J.c.owner)
)
take = (
    update(J)
    .where(J.c.seq == bindparam("at_seq"), _claimable())
    .values(
        status=func.coalesce(func.nullif(J.c.status, QUEUED), RUNNING),
        lease_owner=bindparam("worker"),
        lease_until=bindparam("lease_until"),
        started_at=func.coalesce(J.c.started_at, bindparam("now")),
    )
    .returning(*J.c)
)
forget = (
    update(J).where(J.c.lease_owner == bindparam("worker"), J.c.status.in_(HELD_STATES)).values(lease_until=0)
)
heartbeat = (
    update(J).where(_held()).values(lease_until=bindparam("lease_until")).returning(J.c.cancel_requested)
)
release = update(J).where(_held()).values(lease_until=0)
count_error = update(J).where(_held()).values(attempts=J.c.attempts + 1).returning(J.c.attempts)
attempt_count = (
    update(J)
    .where(_held())
    .values(
        attempts=J.c.attempts + 1,
        prompt_id=bindparam("prompt_id"),
        run_started_at=func.coalesce(J.c.run_started_at, bindparam("now")),
    )
    .returning(J.c.attempts)
)
attempt_put = insert(A).values(
    job_id=bindparam("job_id"),
    n=bindparam("n"),
    prompt_id=bindparam("prompt_id"),
    worker=bindparam("worker"),
    started_at=bindparam("now"),
)
output_names = select(OUT.c.node_id, OUT.c.name).where(OUT.c.job_id == bindparam("job_id"))
outputs_drop = delete(OUT).where(OUT.c.job_id == bindparam("job_id"))
attempt_drop = delete(A).where(A.c.prompt_id == bindparam("prompt_id"))
attempt_uncount = (
    update(J)
    .where(_held(), J.c.prompt_id == bindparam("pid"))
    .values(attempts=J.c.attempts - 1, prompt_id=None)
)
# A draining worker gives back a job it never started: queued again (a canceling one stays
# canceling, for whoever claims it to end), with no lease, and no start time if never tried.
_never_tried = J.c.attempts == 0
hand_back = (
    update(J)
    .where(_held())
    .values(
        status=case((J.c.status == RUNNING, QUEUED), else_=J.c.status),
        lease_owner=None,
        lease_until=None,
        started_at=case((_never_tried, None), else_=J.c.started_at),
        run_started_at=case((_never_tried, None), else_=J.c.run_started_at),
    )
)
attempt_end = (
    update(A)
    .where(A.c.prompt_id == bindparam("pid"), A.c.ended_at.is_(None))
    .values(ended_at=bindparam("now"), outcome=bindparam("outcome"), reason=bindparam("reason"))
)
attempts_of = select(A).where(A.c.job_id == bindparam("job_id")).order_by(A.c.n)
progress = update(J).where(_held()).values(progress=bindparam("progress"))
_end: dict = dict(
    status=bindparam("status"),
    completed_at=bindparam("now"),
    error=bindparam("error"),
    lease_owner=None,
    lease_until=None,
)
finish = update(J).where(_held()).values(**_end)
finish_with_progress = update(J).where(_held()).values(**_end, progress=bindparam("progress"))

# --- assets ----------------------------------------------------------------------------------
asset_exists = select(AS.c.id).where(AS.c.id == bindparam("id"))
asset_put = insert(AS).values(
    id=bindparam("id"),
    hash=bindparam("hash"),
    size=bindparam("size"),
    content_type=bindparam("content_type"),
    file_path=bindparam("file_path"),
    created_at=bindparam("created_at"),
    job_id=bindparam("job_id"),
    tags=bindparam("tags"),
    owner=bindparam("owner"),
)
output_put = insert(OUT).values(
    job_id=bindparam("job_id"),
    node_id=bindparam("node_id"),
    name=bindparam("name"),
    kind=bindparam("kind"),
    asset_id=bindparam("asset_id"),
)
_asset = select(AS, R.c.uri).outerjoin(R, R.c.hash == AS.c.hash)
asset_by_id = _asset.where(AS.c.id == bindparam("id"))
asset_by_id_of = asset_by_id.where(AS.c.owner == bindparam("owner"))
asset_by_hash = _asset.where(AS.c.hash == bindparam("hash")).limit(1)
# an asset of `owner` over the blob: bytes another person uploaded read as unknown
asset_by_hash_of = _asset.where(AS.c.hash == bindparam("hash"), AS.c.owner == bindparam("owner")).limit(1)
remote_exists = select(R.c.hash).where(R.c.hash == bindparam("hash"))
remote_put = insert(R).values(hash=bindparam("hash"), uri=bindparam("uri"))

# --- webhook outbox --------------------------------------------------------------------------
delivery_put = insert(D).values(
    job_id=bindparam("job_id"), body=bindparam("body"), attempts=0, next_at=bindparam("now"), done=False
)
deliveries_due = (
    select(D)
    .where(D.c.done.is_(False), D.c.next_at <= bindparam("now"))
    .order_by(D.c.id)
    .limit(bindparam("n"))
)
delivery_end = (
    update(D)
    .where(D.c.id == bindparam("did"))
    .values(
        attempts=D.c.attempts + 1,
        done=bindparam("done"),
        last_error=bindparam("error"),
        next_at=bindparam("next_at"),
    )
)

# --- workers and pins ------------------------------------------------------------------------
worker_get = select(W).where(W.c.id == bindparam("id"))
workers_seen = select(W).where(W.c.seen_at >= bindparam("since")).order_by(W.c.id)
worker_put = insert(W).values(
    id=bindparam("id"),
    ui_url=bindparam("ui_url"),
    models=bindparam("models"),
    loaded=bindparam("loaded"),
    job_id=bindparam("job_id"),
    draining=False,
    started_at=bindparam("now"),
    seen_at=bindparam("now"),
)
worker_beat = (
    update(W)
    .where(W.c.id == bindparam("wid"))
    .values(
        ui_url=bindparam("ui_url"),
        models=bindparam("models"),
        loaded=bindparam("loaded"),
        job_id=bindparam("job_id"),
        seen_at=bindparam("now"),
    )
    .returning(W.c.draining)
)
# what the worker holds once a job of its ends (written with that end); its models on disk and
# its address change only with its own beat
worker_holds = (
    update(W)
    .where(W.c.id == bindparam("wid"))
    .values(loaded=bindparam("loaded"), job_id=bindparam("held"), seen_at=bindparam("now"))
)
worker_restart = (
    update(W).where(W.c.id == bindparam("wid")).values(draining=False, started_at=bindparam("now"))
)
worker_drain = update(W).where(W.c.id == bindparam("wid")).values(draining=True)
worker_gone = delete(W).where(W.c.id == bindparam("id"))
pin_get = select(P.c.worker_id).where(P.c.key == bindparam("key"))
pin_drop = delete(P).where(P.c.key == bindparam("key"))
pin_put = insert(P).values(key=bindparam("key"), worker_id=bindparam("worker_id"), at=bindparam("now"))
pin_counts = select(P.c.worker_id, func.count()).group_by(P.c.worker_id)
