"""The worker: claims a job from the ledger under a lease, heartbeats the lease, runs the
job on its ComfyUI and records the outcome. The proxy runs one in its own process by
default; a cluster runs one beside each ComfyUI (the same code, without the proxy).

A run ComfyUI lost (crash, kill -9, restart) is submitted again, up to max_attempts; a run
ComfyUI rejected fails with its node errors and is never retried; a run that succeeded is
recorded as such before its outputs are fetched, so it is never run again.

Each worker also writes its own row in the ledger on every beat (comfy_jobs/presence.py): the
models it has on disk (placement), the job it holds, the address of its proxy (the gateways'
UI pinning). A drain (`comfyctl drain`, SIGTERM of `python -m comfy_jobs worker`) stops
claiming, lets the job ComfyUI runs finish, hands back the one queued behind it, and leaves
queued jobs to the other workers.

Pipelining: while the ledger holds jobs it may run, a worker holds up to HOLD of them in
ComfyUI, each under its own lease and heartbeat, each submitted to ComfyUI as soon as it is
claimed; the next one waits in ComfyUI's own queue and starts the moment the current one
ends, instead of after the worker has seen the end, committed it and claimed again. A job
whose run is done no longer counts while its outputs are fetched and its end committed: the
one after next is claimed and submitted meanwhile. The one queued behind has
not started, so it can still go elsewhere: a cancel deletes it from ComfyUI's queue, a lost
lease deletes it there too (its new holder runs it), a drain deletes it and gives it back to
the ledger as if never claimed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import time
import uuid

import aiohttp

from comfy_jobs import progress
from comfy_jobs.comfy import ComfyUI, Located, Rejected, Unreachable, rejected_error
from comfy_jobs.model import CANCELED, FAILED, SUCCEEDED, Holding, Job, Output
from comfy_jobs.outputs import MissingInput, pending
from comfy_jobs.podcost import PodCost
from comfy_jobs.presence import Presence
from comfy_jobs.progress import Tracker

log = logging.getLogger(__name__)
COMFY_POLL_S = 0.25  # how often a worker whose ComfyUI is away asks whether it is back
POLL_S = 1.0  # how often the run is checked against /queue and /history
CLAIM_EVERY_S = 1.0  # how often an idle worker claims with nothing telling it a job is there
# jobs a worker holds in ComfyUI at once: the one ComfyUI runs and the next, queued behind it
# (besides those whose run is done and whose end is being recorded)
HOLD = 2
# How long a submission waits for the worker's WebSocket to ComfyUI (back after a restart):
# a run that starts before the worker hears ComfyUI is one whose start it cannot know.
SOCKET_WAIT_S = 2.0
PROGRESS_EVERY_S = 0.5  # the contract throttles progress to about 2 a second
RAN = ("running", "done")  # where ComfyUI has a run that started (and loaded its models)
FORMATS = {1: "image/jpeg", 2: "image/png"}  # ComfyUI's binary preview frames (server.py)


class LeaseLost(Exception):
    pass


class HandedBack(Exception):
    """The worker drains and this job's run had not started: it goes back to the queue."""

    def __init__(self, prompt_id: str | None):
        super().__init__(prompt_id)
        self.prompt_id = prompt_id


class Held:
    """The job this worker holds, with what the heartbeat learnt about it."""

    def __init__(self, job: Job):
        self.job = job
        self.cancel = job.cancel_requested
        self.lost = False
        self.hand_back = False  # the worker drains: give the job back unless its run started
        self.submitted = asyncio.Event()  # its run is in ComfyUI's hands (or the job ended)
        # the attempt the claim recorded, until it is submitted (a job tried before has none)
        self.unsent: str | None = None
        self.task: asyncio.Task | None = None
        self.stream: asyncio.Queue | None = None
        # (node, name) of the outputs committed, while the run goes and after: each is
        # fetched from ComfyUI once
        self.seen = {(o.node_id, o.name) for o in job.outputs}
        # Outputs stored once the run's history entry was there, written with the job's end
        # (one transaction), which follows at once
        self.unwritten: list[Output] = []
        self.run_done = False  # ComfyUI's history has the entry of the run being followed
        self.ran = False  # a run of it started in ComfyUI (which loaded its models)
        self.ended = False  # its end is written, and with it the worker's row after it

    def kick(self) -> None:
        if self.stream is not None:
            self.stream.put_nowait(("kick", {}))


class Worker:
    def __init__(self, ledger, settings, comfy_url: str, session: aiohttp.ClientSession, files, hub, metrics):
        self.ledger, self.s, self.files, self.hub, self.metrics = ledger, settings, files, hub, metrics
        self.comfy = ComfyUI(comfy_url, session)
        self.id = settings.worker_id
        self.client_id = f"comfy-jobs-{uuid.uuid4().hex[:12]}"
        self.streams: dict[str, asyncio.Queue] = {}
        self.running_prompt: str | None = None
        # Which of our runs ComfyUI was executing when its WebSocket last went away (None:
        # none, or not known). ComfyUI executes one prompt at a time, so a run queued behind
        # that one cannot have started: its loss is not an attempt (`_behind_the_lost_run`).
        self._executing: str | None = None
        self._executing_at_drop: str | None = None
        self._drops = 0  # how often the socket went away: a loss is judged by a drop after its submit
        self._socket_up = asyncio.Event()
        # the jobs held, in the order claimed (and submitted): the first is the one running
        self.held: dict[str, Held] = {}
        # one submission at a time, so ComfyUI queues the jobs in the order they were claimed
        self._submitting = asyncio.Lock()
        self.comfy_up = False
        self._wake = asyncio.Event()
        # Whether a claim may find a job now: one was created (wake: here, or a NOTIFY from
        # another process), or the last claim saw more than the one it took. Otherwise the
        # worker claims only every CLAIM_EVERY_S (a lease that runs out tells no one): a claim
        # is a write transaction, and one that finds nothing holds up the writes of the jobs
        # that run (SQLite has one writer).
        self._more = True
        self._next_claim = 0.0
        self._stopping = False
        cost = PodCost(settings.pod, session) if settings.pod else None
        self.presence = Presence(
            ledger, settings, lambda: [j for j, h in self.held.items() if not h.ended], cost
        )
        self.task: asyncio.Task | None = None

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name=f"worker {self.id}")

    def wake(self) -> None:
        self._more = True
        self._wake.set()

    def cancel_now(self, job_id: str) -> None:
        """The API asked to cancel a job: act at once if it is ours (else the heartbeat of
        whichever worker holds it learns it)."""
        held = self.held.get(job_id)
        if held is not None:
            held.cancel = True
            held.kick()

    async def stop(self, drain: bool = False) -> None:
        """drain: finish the job ComfyUI runs first, hand back the one queued behind it (no
        other is claimed meanwhile). Otherwise the leases are given back at once and ComfyUI
        keeps running the jobs; the next worker to start resumes following them."""
        self._stopping = True
        self._wake.set()
        if self.task is None:
            return
        if not drain:
            self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def run(self) -> None:
        await self.ledger.forget_own_leases(self.id)
        await self.presence.report(starting=True)
        helpers = [
            asyncio.create_task(self._listen()),
            asyncio.create_task(self.presence.reports()),
            asyncio.create_task(self._notices()),
        ]
        try:
            while not self._stopping:
                if self.presence.draining:
                    self._hand_back_waiting()
                    await self._idle(1.0)
                    continue
                if self._in_comfy() >= HOLD:
                    await self._idle(1.0)  # a run or a job ending wakes it
                    continue
                if not self.comfy_up:
                    self.comfy_up = await self.comfy.ready()
                    if not self.comfy_up:
                        await self._idle(1.0)
                        continue
                if not self._more and time.monotonic() < self._next_claim:
                    await self._idle(self._next_claim - time.monotonic())
                    continue
                self._more, self._next_claim = False, time.monotonic() + CLAIM_EVERY_S
                prompt_id = str(uuid.uuid4())
                try:
                    job = await self.ledger.claim(self.id, self.s.lease_s, prompt_id)
                except Exception as exc:  # noqa: BLE001 - the database away (a failover); it comes back
                    log.warning("worker %s: claiming failed (%s); trying again", self.id, exc)
                    continue
                if job is None:
                    if not self.held:
                        await self.presence.busy(False)
                    continue
                self._more = self._more or job.others_waiting
                await self.presence.busy(True)
                held = self._take(job, job.prompt_id == prompt_id)
                # The next claim waits for this job's submission, which it would otherwise
                # queue behind in the ledger (SQLite has one writer) for nothing.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(held.submitted.wait(), 1.0)
            # a drain: the run ComfyUI has started finishes; the one queued behind goes back
            self._hand_back_waiting()
            while self.held:
                await asyncio.wait([h.task for h in self.held.values() if h.task is not None])
        finally:
            holds = [h.task for h in self.held.values() if h.task is not None]
            for t in holds + helpers:
                t.cancel()
            if holds:  # each gives its lease back (see _hold)
                await asyncio.gather(*holds, return_exceptions=True)
            if self._stopping and not self.held:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.ledger.forget_worker(self.id))

    def _take(self, job: Job, fresh: bool) -> Held:
        """`fresh`: the claim recorded the job's first attempt (not submitted yet)."""
        held = self.held[job.id] = Held(job)
        if fresh:
            held.unsent = job.prompt_id
        held.task = asyncio.create_task(self._hold(held), name=f"job {job.id}")
        held.task.add_done_callback(lambda _t: self._ended(held))
        return held

    def _in_comfy(self) -> int:
        """Held jobs whose run ComfyUI has not finished. One whose run is done is only being
        recorded (its outputs fetched, its end committed): the next job is claimed and
        submitted meanwhile, rather than after that end's commit."""
        return sum(not h.run_done for h in self.held.values())

    def _ended(self, held: Held) -> None:
        held.submitted.set()
        self._wake.set()

    def _hand_back_waiting(self) -> None:
        for held in self.held.values():
            if not held.hand_back:
                held.hand_back = True
                held.kick()

    async def _notices(self) -> None:
        """Jobs submitted through another process (a gateway) wake this worker at once."""
        while True:
            await self.ledger.wait_for_work(30.0)
            self.wake()

    async def _idle(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def _hold(self, held: Held) -> None:
        job = held.job
        if job.attempts == 0:
            self.metrics.queued.observe(time.time() - job.created_at)
        beat = asyncio.create_task(self._heartbeat(held))
        try:
            try:
                await self._drive(held)
            except LeaseLost:
                log.warning("job %s: lost the lease to another worker; leaving it to that one", job.id)
                if job.prompt_id:
                    # Queued behind another run, it has not started: its new holder runs it, so
                    # ours must not (ComfyUI ignores the delete of a run that has started).
                    with contextlib.suppress(Unreachable):
                        await self.comfy.dequeue(job.prompt_id)
            except HandedBack as back:
                async with self._ending(held) as holding:
                    await self.ledger.hand_back(job.id, self.id, back.prompt_id, holding)
                log.info("job %s: handed back to the queue unstarted (the worker drains)", job.id)
            except asyncio.CancelledError:
                await asyncio.shield(self.ledger.release(job.id, self.id))
                raise
            except Exception as exc:  # noqa: BLE001 - one job's bug must not stop the worker
                log.exception("job %s: unexpected error", job.id)
                await self._errored(held, exc)
                await asyncio.sleep(1.0)
        finally:
            beat.cancel()
            self.held.pop(job.id, None)
            self.hub.finished(job.id)
        if not held.ended:  # no end written with the row (the lease lost, or given back to retry)
            loaded = self._loaded_after(held)
            if not self.held or loaded != self.presence.loaded:
                # idle again, or other models in ComfyUI: placement and drains see it at once
                # (with the next job already held, the periodic report says which it is)
                self.presence.loaded = loaded
                await self.presence.report()

    def _loaded_after(self, held: Held) -> list[str]:
        """The models ComfyUI has loaded once this job ends: its own if a run of it started
        (not if it was canceled, rejected or given back before that)."""
        return list(held.job.needs) if held.job.needs and held.ran else self.presence.loaded

    @contextlib.asynccontextmanager
    async def _ending(self, held: Held):
        """Around the ledger call that ends a job: yields the worker's row from then on (the
        next job held, or idle, and the models loaded) for that call to write in the same
        transaction, so that placement never reads the job ended and its worker still busy."""
        async with self.presence.writing:
            loaded = self._loaded_after(held)
            yield Holding(next((j for j in self.presence.holding() if j != held.job.id), None), loaded)
            held.ended = True
            self.presence.loaded = loaded

    async def _errored(self, held: Held, exc: Exception) -> None:
        """An error no step expected counts as an attempt: retried (the lease given back)
        until COMFY_JOB_MAX_ATTEMPTS, then the job fails with the error as its reason."""
        n = await self.ledger.count_error(held.job.id, self.id)
        if n is None:
            return  # no longer ours
        if n < self.s.max_attempts:
            log.warning(
                "job %s: attempt %d of %d ended in that error; retrying", held.job.id, n, self.s.max_attempts
            )
            await self.ledger.release(held.job.id, self.id)
            return
        await self._finish(
            held,
            FAILED,
            {
                "code": "worker_error",
                "message": f"the worker could not run the job ({type(exc).__name__}: {str(exc)[:300]}), "
                f"{n} time(s); COMFY_JOB_MAX_ATTEMPTS allows no more. The proxy's log has the traceback",
            },
        )

    async def _heartbeat(self, held: Held) -> None:
        while True:
            await asyncio.sleep(self.s.lease_s / 3)
            try:
                claim = await self.ledger.heartbeat(held.job.id, self.id, self.s.lease_s)
            except Exception as exc:  # noqa: BLE001 - a database hiccup; the next beat retries
                log.warning("job %s: heartbeat failed: %s", held.job.id, exc)
                continue
            if not claim.held:
                held.lost = True
                held.kick()
                return
            if claim.cancel_requested and not held.cancel:
                held.cancel = True
                held.kick()

    # --- one job -----------------------------------------------------------------------
    async def _drive(self, held: Held) -> None:
        job = held.job
        if job.prompt_id and not held.unsent:  # an earlier attempt: does ComfyUI still have it?
            past = await self.ledger.attempts_of(job.id)
            if past and past[-1]["outcome"] == "succeeded":
                held.ran = True
                return await self._succeed(held, past[-1]["prompt_id"], json.loads(past[-1]["reason"]))
            loc = await self._locate(held, job.prompt_id)
            if loc.state != "unknown":
                held.submitted.set()
                log.info(
                    "job %s: resuming attempt %d, which ComfyUI still has (%s)",
                    job.id,
                    job.attempts,
                    loc.state,
                )
                loc = await self._follow(held, job.prompt_id, loc)
                if loc.state != "unknown" or held.cancel:
                    return await self._conclude(held, job.prompt_id, loc)
            await self._lost(job, job.prompt_id, "ComfyUI no longer knew the run when the job was resumed")
        while True:
            if held.cancel:
                await self._drop_unsent(held)
                return await self._finish(held, CANCELED, None)
            if held.hand_back:
                raise HandedBack(held.unsent)  # the claim's attempt, if any, is dropped with it
            if job.attempts >= self.s.max_attempts:
                return await self._finish(
                    held,
                    FAILED,
                    {
                        "code": "comfyui_lost_run",
                        "message": f"ComfyUI lost the run {job.attempts} time(s) "
                        "(crash, out-of-memory kill or restart); COMFY_JOB_MAX_ATTEMPTS allows no more",
                    },
                )
            try:
                graph = await self.files.resolve_inputs(self.comfy, job.workflow)
            except MissingInput as exc:
                await self._drop_unsent(held)
                return await self._finish(held, FAILED, {"code": "missing_asset", "message": str(exc)})
            except Unreachable:
                await self._wait_for_comfy(held)
                continue
            prompt_id = held.unsent or str(uuid.uuid4())
            held.stream = self.streams[prompt_id] = asyncio.Queue()
            try:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._socket_up.wait(), SOCKET_WAIT_S)
                async with self._submitting:
                    self._check(held)
                    if held.unsent:  # recorded by the claim
                        held.unsent = None
                    else:
                        job.attempts = await self.ledger.start_attempt(job.id, self.id, prompt_id)
                    job.prompt_id = prompt_id
                    # the ledger dropped a lost run's outputs with the new attempt
                    held.seen.clear()
                    held.unwritten.clear()
                    self.metrics.attempts += 1
                    await self.comfy.submit(prompt_id, graph, self.client_id, job.extra_data)
                    held.submitted.set()
            except Rejected as exc:
                return await self._finish(
                    held,
                    FAILED,
                    rejected_error(exc.body, job.workflow),
                    attempt=(prompt_id, "rejected", json.dumps(exc.body)[:4000]),
                )
            except Unreachable as exc:
                if not exc.sent:  # never reached ComfyUI: not an attempt
                    await self.ledger.abort_attempt(job.id, self.id, prompt_id)
                    job.attempts -= 1
                    self.metrics.attempts -= 1
                    await self._wait_for_comfy(held)
                    continue
            log.info("job %s: attempt %d submitted to ComfyUI as %s", job.id, job.attempts, prompt_id)
            drops_at_submit = self._drops
            loc = await self._follow(held, prompt_id, Located("pending"))
            if loc.state == "unknown" and not held.cancel:
                if self._behind_the_lost_run(prompt_id, drops_at_submit):
                    # queued behind the run ComfyUI was executing when it went away: this one
                    # never started, so it is no attempt (a crash or an OOM kill of the run
                    # ahead must not use up the attempts of the job waiting behind it)
                    log.info("job %s: ComfyUI went away before its run started; submitting it again", job.id)
                    await self.ledger.abort_attempt(job.id, self.id, prompt_id)
                    job.attempts -= 1
                    self.metrics.attempts -= 1
                else:
                    await self._lost(job, prompt_id, "ComfyUI lost the run (it stopped or restarted)")
                await self._wait_for_comfy(held)
                continue
            return await self._conclude(held, prompt_id, loc)

    async def _drop_unsent(self, held: Held) -> None:
        """The job ends before the attempt its claim recorded was submitted: no attempt."""
        if held.unsent:
            await self.ledger.abort_attempt(held.job.id, self.id, held.unsent)
            held.job.attempts -= 1
            held.unsent = None

    def _behind_the_lost_run(self, prompt_id: str, drops_at_submit: int) -> bool:
        """ComfyUI went away, after this run was submitted, while executing another run of
        ours (its socket said so and had not said that run ended): ComfyUI executes one
        prompt at a time, so this one had not started. Anything less certain counts."""
        return (
            self._drops > drops_at_submit
            and self._executing_at_drop is not None
            and self._executing_at_drop != prompt_id
        )

    async def _lost(self, job: Job, prompt_id: str, reason: str) -> None:
        log.warning("job %s: %s (attempt %d of %d)", job.id, reason, job.attempts, self.s.max_attempts)
        self.metrics.lost += 1
        await self.ledger.end_attempt(job.id, prompt_id, "lost", reason)

    async def _wait_for_comfy(self, held: Held) -> None:
        self.comfy_up = False
        while not await self.comfy.ready():
            self._check(held)
            # a restarted ComfyUI gets its waiting job within a quarter second of answering
            # (the check is one GET of /system_stats on loopback)
            await asyncio.sleep(COMFY_POLL_S)
        self.comfy_up = True

    def _check(self, held: Held) -> None:
        if held.lost:
            raise LeaseLost()

    async def _give_back_if_waiting(self, held: Held, prompt_id: str) -> bool:
        """A drain: a run still waiting in ComfyUI's queue is deleted there and the job
        handed back (HandedBack). Returns whether the run has started (it then finishes)."""
        loc = await self._locate(held, prompt_id)
        if loc.state == "pending":
            with contextlib.suppress(Unreachable):
                await self.comfy.dequeue(prompt_id)
            loc = await self._locate(held, prompt_id)
            if loc.state == "unknown":  # deleted before it started: it never ran
                raise HandedBack(prompt_id)
        return loc.state != "pending"

    async def _locate(self, held: Held, prompt_id: str, history_first: bool = False) -> Located:
        while True:
            self._check(held)
            try:
                return await self.comfy.locate(prompt_id, history_first)
            except Unreachable:
                await self._progress(held, None, "ComfyUI is not answering; waiting for it to come back")
                await self._wait_for_comfy(held)

    async def _follow(self, held: Held, prompt_id: str, loc: Located) -> Located:
        """Until ComfyUI has a history entry for the run, or no longer knows it."""
        job = held.job
        stream = held.stream = self.streams.setdefault(prompt_id, asyncio.Queue())
        tracker = Tracker(job.workflow)
        # The WebSocket says when the run ends; /queue and /history are asked at once only to
        # resume a run, then every POLL_S in case the socket missed it (or ComfyUI died).
        interrupted, last_write, started, ended = False, 0.0, loc.state != "pending", False
        held.ran = held.ran or loc.state in RAN
        held.run_done = False
        commits: list[asyncio.Task] = []
        next_poll = 0.0 if loc.state != "pending" else time.monotonic() + POLL_S
        try:
            while loc.state not in ("done", "unknown"):
                self._check(held)
                if held.cancel and not interrupted:
                    with contextlib.suppress(Unreachable):
                        await self.comfy.interrupt(prompt_id)
                    interrupted = True
                    next_poll = 0.0  # a run deleted from the queue sends nothing: ask at once
                if held.hand_back and not started:
                    started = held.ran = await self._give_back_if_waiting(held, prompt_id)
                try:
                    kind, data = await asyncio.wait_for(stream.get(), max(0.01, next_poll - time.monotonic()))
                except asyncio.TimeoutError:
                    kind, data = "tick", {}
                if kind == "preview":
                    self.hub.preview(job.id, tracker.current, *data)
                    continue
                if kind == "executed" and data.get("node") is not None:
                    # Committed beside the run (and beside the /history request that confirms
                    # its end): every commit ends before the run's does (below).
                    commits.append(
                        asyncio.create_task(
                            self._commit_quietly(held, str(data["node"]), data.get("output") or {})
                        )
                    )
                if tracker.feed(kind, data) and time.monotonic() - last_write >= PROGRESS_EVERY_S:
                    last_write = time.monotonic()
                    await self._progress(held, tracker)
                if kind == "execution_start":
                    # throttled from the run's start: a run shorter than that writes no
                    # snapshot of its own, the job's end writes the last (done) one
                    started, held.ran, last_write = True, True, time.monotonic()
                if kind in ("execution_success", "execution_error", "execution_interrupted") or (
                    kind == "executing" and data.get("node") is None
                ):
                    next_poll, ended = 0.0, True
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + POLL_S
                    # after the socket said it ended, its history entry is there: one request
                    loc = await self._locate(held, prompt_id, history_first=ended)
                    held.run_done = loc.state == "done"
                    if held.run_done:
                        self._wake.set()  # its place in ComfyUI's queue is free
                    held.ran = held.ran or loc.state in RAN
                    started = started or loc.state != "pending"
                    if loc.state == "pending" and tracker.current is None:
                        await self._progress(held, tracker, "waiting in ComfyUI's queue")
            if commits:  # the outputs the socket reported are committed before the run ends
                await asyncio.gather(*commits)
            return loc
        finally:
            for t in commits:
                t.cancel()
            self.streams.pop(prompt_id, None)
            held.stream = None

    async def _commit_quietly(self, held: Held, node_id: str, node_out: dict) -> None:
        """An output a node reported while the run goes; one ComfyUI could not hand over now
        is fetched again from the run's history entry at its end. One stored after that
        entry was there is written with the job's end (the run cannot be lost any more)."""
        with contextlib.suppress(Unreachable):
            await self.files.commit(
                self.comfy,
                held.job,
                node_id,
                node_out,
                held.seen,
                lambda: held.unwritten if held.run_done else None,
            )

    async def _progress(self, held: Held, tracker: Tracker | None, message: str | None = None) -> None:
        snap = (
            tracker.snapshot(message)
            if tracker
            else progress.waiting(held.job.progress, held.job.workflow, message)
        )
        held.job.progress = snap
        await self.ledger.set_progress(held.job.id, self.id, snap)
        self.hub.notify(held.job.id)

    async def _conclude(self, held: Held, prompt_id: str, loc: Located) -> None:
        if loc.state == "unknown":  # only reached when canceled: the queued prompt was deleted
            return await self._finish(
                held, CANCELED, None, attempt=(prompt_id, "canceled", "removed from ComfyUI's queue")
            )
        entry = loc.entry or {}
        status = entry.get("status") or {}
        if status.get("status_str", "success") == "success":
            outputs = entry.get("outputs") or {}
            if not pending(outputs, held.seen):  # all committed while it ran: one transaction
                return await self._finish(
                    held,
                    SUCCEEDED,
                    None,
                    self._done(held),
                    attempt=(prompt_id, "succeeded", json.dumps(outputs)),
                )
            # Recorded first: if we die while fetching the files, the next worker fetches
            # them instead of running the job again.
            await self.ledger.end_attempt(held.job.id, prompt_id, "succeeded", json.dumps(outputs))
            return await self._succeed(held, prompt_id, outputs)
        messages = {event: data for event, data in status.get("messages") or [] if isinstance(data, dict)}
        if "execution_interrupted" in messages:
            ended = (prompt_id, "interrupted", "")
            if held.cancel:
                return await self._finish(held, CANCELED, None, attempt=ended)
            return await self._finish(
                held,
                FAILED,
                {"code": "interrupted", "message": "the run was interrupted in ComfyUI"},
                attempt=ended,
            )
        err = messages.get("execution_error") or {}
        tb = err.get("traceback")
        return await self._finish(
            held,
            FAILED,
            {
                "code": "node_execution_error",
                "message": err.get("exception_message") or "ComfyUI reported an error without details",
                "node_id": str(err["node_id"]) if err.get("node_id") is not None else None,
                "class_type": err.get("node_type"),
                "traceback": "".join(tb) if isinstance(tb, list) else tb,
            },
            attempt=(prompt_id, "failed", str(err.get("exception_message", ""))[:4000]),
        )

    async def _succeed(self, held: Held, prompt_id: str, outputs: dict) -> None:
        """Fetch what the run saved and not yet committed; written with the job's end."""
        for node_id, node_out in outputs.items():
            while True:
                try:
                    await self.files.commit(
                        self.comfy, held.job, str(node_id), node_out, held.seen, lambda: held.unwritten
                    )
                    break
                except Unreachable as exc:
                    log.warning("job %s: fetching outputs: %s; retrying", held.job.id, exc)
                    await self._wait_for_comfy(held)
                    await asyncio.sleep(1.0)
        await self._finish(held, SUCCEEDED, None, self._done(held))

    @staticmethod
    def _done(held: Held) -> dict:
        return progress.done(held.job.progress, held.job.workflow)

    async def _finish(
        self,
        held: Held,
        status: str,
        error: dict | None,
        progress: dict | None = None,
        attempt: tuple[str, str, str] | None = None,
    ) -> None:
        job = held.job
        async with self._ending(held) as holding:
            done = await self.ledger.finish(
                job.id, self.id, status, error, progress, attempt, held.unwritten, holding
            )
        if done:
            self.metrics.finished[status] += 1
            if job.started_at:
                self.metrics.execution.observe(time.time() - job.started_at)
            log.info(
                "job %s: %s%s", job.id, status, f" ({error['code']}: {error['message']})" if error else ""
            )
        else:
            log.warning("job %s: ended %s here, but the ledger gave it to another worker", job.id, status)

    # --- ComfyUI's WebSocket -----------------------------------------------------------
    async def _listen(self) -> None:
        backoff = 0.5
        while True:
            connected = False
            try:
                async with self.comfy.websocket(self.client_id) as ws:
                    connected, backoff = True, 0.5
                    self._socket_up.set()
                    async for msg in ws:
                        self._dispatch(msg)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                pass
            self._socket_up.clear()
            if connected:
                # what the socket last said before it went away (the attempts to reconnect
                # while ComfyUI is down say nothing); after a reconnect nothing is known of
                # runs that started meanwhile, so the record starts empty again
                self._executing_at_drop, self._executing = self._executing, None
                self._drops += 1
            await asyncio.sleep(backoff)
            # at most a second apart: a ComfyUI back from a crash is heard from at once
            backoff = min(backoff * 2, 1.0)

    def _dispatch(self, msg: aiohttp.WSMessage) -> None:
        if msg.type == aiohttp.WSMsgType.TEXT:
            try:
                m = json.loads(msg.data)
            except ValueError:
                return
            data = m.get("data") if isinstance(m.get("data"), dict) else {}
            pid = data.get("prompt_id")
            if m.get("type") == "execution_start" and pid:
                self.running_prompt = self._executing = pid
            elif (
                pid
                and pid == self._executing
                and (
                    m.get("type") in ("execution_success", "execution_error", "execution_interrupted")
                    or (m.get("type") == "executing" and data.get("node") is None)
                )
            ):
                self._executing = None
            if pid in self.streams:
                self.streams[pid].put_nowait((m.get("type"), data))
        elif msg.type == aiohttp.WSMsgType.BINARY and len(msg.data) > 8:
            event, fmt = struct.unpack(">II", msg.data[:8])
            if event == 1 and self.running_prompt in self.streams:
                self.streams[self.running_prompt].put_nowait(
                    ("preview", (FORMATS.get(fmt, "image/jpeg"), msg.data[8:]))
                )
