"""Carry out a plan: free-space check, per-file locks, transfers with retries, verification,
atomic placement, state records and (only after a clean run) --delete."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from comfy_stack.files import SHARED, place

from .backends import Backend, make_backend
from .errors import (
    DiskSpaceError,
    EndpointError,
    SourceChangedError,
    SyncError,
    TransferError,
    TransientError,
    UnplaceableError,
    VerificationError,
)
from .lock import FileLock, lock_path
from .partial import partial_path
from .placement import NAME_ERRNOS, unplaceable
from .planner import Action, Item, RemoteObject, Step, decide, plan_deletions
from .progress import Progress
from .settings import Settings
from .state import StateStore, local_stat
from .verify import Digests, Expect, verify_file

log = logging.getLogger(__name__)
T = TypeVar("T")
# Restarts of one file against a replaced source before the run gives up on it (the object
# is probably still being uploaded; the next run fetches the finished one).
MAX_SOURCE_CHANGES = 3


@dataclass
class Outcome:
    fetched: list[str] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    errors: list[SyncError] = field(default_factory=list)
    unplaceable: list[UnplaceableError] = field(default_factory=list)  # skipped; the rest went on


class Runner:
    def __init__(self, settings: Settings, progress: Progress):
        self.s, self.progress = settings, progress
        self.state = StateStore(settings.state_dir)
        self._backends: dict[str, Backend] = {}

    def backend(self, scheme: str) -> Backend:
        key = "http" if scheme in ("http", "https") else scheme
        if key not in self._backends:
            self._backends[key] = make_backend(key, self.s)
        return self._backends[key]

    # --- planning ------------------------------------------------------------------------------
    def stat_all(
        self, items: list[Item], known: dict[str, RemoteObject] | None = None
    ) -> dict[str, RemoteObject]:
        """Remote size+identity per destination: from a listing when given, else HEADs."""
        out = dict(known or {})
        todo = [i for i in items if i.dest not in out]
        if todo:
            with ThreadPoolExecutor(self.s.stat_workers, thread_name_prefix="stat") as pool:
                futures = {
                    pool.submit(
                        self.retry,
                        f"stat {i.source}",
                        functools.partial(self.backend(i.source.scheme).stat, i.source),
                    ): i
                    for i in todo
                }
                for fut in as_completed(futures):
                    out[futures[fut].dest] = fut.result()
        return out

    def steps(self, items: list[Item], remotes: dict[str, RemoteObject]) -> list[Step]:
        md = self.s.models_dir
        refused = unplaceable([i.dest for i in items], md)
        return [
            Step(i, Action.REFUSE, refused[i.dest], remotes[i.dest])
            if i.dest in refused
            else decide(i, remotes[i.dest], self.state.get(i.dest), local_stat(md / i.dest), self.s.verify)
            for i in items
        ]

    def deletions(self, items: list[Item]) -> list[str]:
        return plan_deletions(items, self.state.all_dests(), self.s.delete_max) if self.s.delete else []

    def check_space(self, steps: list[Step]) -> None:
        need = 0
        for st in steps:
            if st.action in (Action.SKIP, Action.REFUSE):
                continue
            part = partial_path(self.s.models_dir / st.item.dest)
            try:
                have = os.lstat(part).st_blocks * 512  # allocated, so sparse partials count right
            except FileNotFoundError:
                have = 0
            need += max(0, st.remote.size - have)
        self.s.models_dir.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.s.models_dir).free
        if need + self.s.min_free_margin > free:
            raise DiskSpaceError(
                f"not enough space in {self.s.models_dir}: the transfers need {need} bytes "
                f"({need / 2**30:.2f} GiB) plus a {self.s.min_free_margin} byte margin, "
                f"{free} bytes ({free / 2**30:.2f} GiB) are free. Free space, grow the volume, "
                "or choose fewer profiles."
            )

    # --- execution -----------------------------------------------------------------------------
    def execute(self, steps: list[Step], deletions: list[str]) -> Outcome:
        out = Outcome()
        for st in steps:
            if st.action is Action.REFUSE:
                self.refuse(out, UnplaceableError(f"{st.item.dest}: not placed: {st.reason}"))
        steps = [st for st in steps if st.action is not Action.REFUSE]
        self.progress.begin(len(steps), sum(s.remote.size for s in steps))
        work = []
        for st in steps:
            if st.action is Action.SKIP:
                out.skipped.append(st.item.dest)
                self.progress.finish_file(st.item.dest, st.remote.size)
            else:
                work.append(st)
        if work:
            # A file of one part is one stream, a larger one MODEL_SYNC_RANGE_THREADS streams:
            # small files get as many streams at once as the large ones have in all. Their
            # time goes to round trips and to the fsync before each rename, which overlap
            # (the filesystem's journal commits the fsyncs that wait together as one).
            large = [st for st in work if st.remote.size > self.s.part_size]
            small = [st for st in work if st.remote.size <= self.s.part_size]
            with (
                ThreadPoolExecutor(self.s.file_workers, thread_name_prefix="file") as pool,
                ThreadPoolExecutor(
                    self.s.file_workers * self.s.range_threads, thread_name_prefix="small"
                ) as small_pool,
            ):
                futures = {pool.submit(self.process, st, out): st for st in large}
                futures |= {small_pool.submit(self.process, st, out): st for st in small}
                for fut in as_completed(futures):
                    exc = fut.exception()
                    if exc is None:
                        continue
                    if isinstance(exc, OSError) and exc.errno in NAME_ERRNOS:
                        # The file's name, or something in its way, not the disk: skip it alone.
                        self.refuse(
                            out,
                            UnplaceableError(
                                f"{futures[fut].item.dest}: not placed: {exc.strerror} ({exc.filename}); "
                                "rename the object or move away what is in its way"
                            ),
                        )
                        continue
                    err = (
                        exc
                        if isinstance(exc, SyncError)
                        else TransferError(f"{futures[fut].item.dest}: {type(exc).__name__}: {exc}")
                    )
                    if not isinstance(exc, SyncError):
                        log.error("unexpected failure for %s", futures[fut].item.dest, exc_info=exc)
                    out.errors.append(err)
                    self.progress.error(str(err))
        # Objects that cannot be placed are not failed transfers: what --delete removes is
        # decided by the selection, which still names them.
        if deletions and not out.errors:
            for dest in deletions:
                self.delete(dest)
                out.deleted.append(dest)
        elif deletions:
            log.warning(
                "--delete skipped: %d file(s) failed, nothing is deleted after an error", len(out.errors)
            )
        self.progress.end(not out.errors)
        return out

    def refuse(self, out: Outcome, err: UnplaceableError) -> None:
        log.error("%s", err)
        out.unplaceable.append(err)
        self.progress.error(str(err))

    def process(self, step: Step, out: Outcome) -> None:
        item, s = step.item, self.s
        final = s.models_dir / item.dest
        with FileLock(
            lock_path(s.state_dir, item.dest), item.dest, s.lock_stale_after, s.lock_log_every, s.lock_timeout
        ):
            # Another process may have placed the file while we waited for the lock.
            fresh = decide(item, step.remote, self.state.get(item.dest), local_stat(final), False)
            if fresh.action is not Action.SKIP or not s.verify:
                step = fresh
            if step.action is Action.SKIP:
                out.skipped.append(item.dest)
                self.progress.finish_file(item.dest, step.remote.size)
                return
            remote = step.remote
            backend = self.backend(item.source.scheme)
            one_get = step.action is Action.FETCH and remote.md5 and remote.size <= s.part_size
            if remote.listed and not one_get:
                # A listing has no store checksum; the HEAD brings the one a file is verified
                # with (for S3 a CRC32, far cheaper to compute than MD5). A file fetched in
                # one GET is checked against the listing's MD5 ETag instead, and the GET's
                # If-Match pins it to the listed version: one request per small file, not two.
                remote = self.retry(f"stat {item.source}", functools.partial(backend.stat, item.source))
            if item.size is not None and item.size != remote.size:
                raise VerificationError(
                    f"{item.dest}: the manifest says {item.size} bytes but "
                    f"{item.source} has {remote.size}; fix the manifest"
                )
            expect = expect_for(item, remote)
            self.progress.start_file(item.dest, remote.size)
            if step.action is Action.VERIFY:
                try:
                    sha = verify_file(final, expect, item.dest)
                    self.progress.finish_file(item.dest, remote.size)
                    self.state.put(item.dest, str(item.source), remote.identity, final, sha)
                    out.verified.append(item.dest)
                    log.info("verified %s", item.dest)
                    return
                except VerificationError as exc:
                    log.warning("%s; fetching it again", exc)
            self.fetch(item, remote, backend, expect, final)
            out.fetched.append(item.dest)

    def fetch(self, item: Item, remote: RemoteObject, backend: Backend, expect: Expect, final: Path) -> None:
        part = partial_path(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        bad_copies = changes = 0

        def changed() -> bool:
            """Whether the source is another object now than the one being fetched; if so,
            fetch that one from scratch: its metadata, its digests, no bytes of the old one."""
            nonlocal remote, expect, changes
            now = backend.stat(item.source)
            if now.identity == remote.identity:
                return False
            changes += 1
            log.warning(
                "%s changed at the source during the download (now %d bytes); "
                "starting over against the new object",
                item.dest,
                now.size,
            )
            backend.discard(item.source, part)
            self.progress.rewind(item.dest, now.size)
            remote, expect = now, expect_for(item, now)
            return True

        def attempt() -> None:
            nonlocal bad_copies
            digests = Digests(expect)
            try:
                backend.download(
                    item.source,
                    remote,
                    part,
                    lambda n: self.progress.advance(item.dest, n),
                    lambda n: self.progress.advance(item.dest, n, network=False),
                    digests,
                )
                sha = verify_file(part, expect, item.dest, digests)
            except SourceChangedError:
                changed()
                raise
            except VerificationError as exc:  # from the check here, or the store's own (OSS CRC64)
                # A source replaced without a 412 (a plain GET, oss2's small objects) is
                # another object, not a bad copy of this one.
                if not backend.pins_version and changed():
                    raise SourceChangedError(f"{exc} (the source changed)") from None
                # Never keep bytes that failed verification, and never resume from them.
                backend.discard(item.source, part)
                self.progress.rewind(item.dest)
                bad_copies += 1
                raise
            place(part, final, mode=SHARED, fsync_dir=True)
            backend.discard(item.source, part)  # resume bookkeeping only; the file moved
            self.state.put(item.dest, str(item.source), remote.identity, final, sha)

        # Three corrupt copies in a row: the source itself disagrees with what it (or the
        # manifest) claims; fetching again will not help. An object replaced again and again
        # while it is fetched is still being uploaded: the next run takes the finished one.
        self.retry(
            f"fetch {item.dest}",
            attempt,
            also=(VerificationError,),
            keep_going=lambda exc: bad_copies < 3 and changes < MAX_SOURCE_CHANGES,
            gave_up="the partial file is kept and the next run resumes it",
        )
        self.progress.finish_file(item.dest, remote.size)
        log.info("placed %s (%d bytes)", item.dest, remote.size)

    def retry(
        self,
        what: str,
        fn: Callable[[], T],
        *,
        also: tuple[type[SyncError], ...] = (),
        keep_going: Callable[[SyncError], bool] = lambda exc: True,
        gave_up: str = "",
    ) -> T:
        """The one retry loop: `fn` again after a failure worth another attempt (a transient
        one, an unreachable endpoint, and `also`), at most 1 + MODEL_SYNC_RETRIES times,
        waiting MODEL_SYNC_BACKOFF doubled each time; `keep_going(exc)` False stops early.
        A transient failure that outlasts every attempt becomes a TransferError (exit 9)."""
        attempts = self.s.retries + 1
        retryable: tuple[type[SyncError], ...] = (TransientError, EndpointError, *also)
        for attempt in range(1, attempts + 1):
            try:
                return fn()
            except retryable as exc:
                last: SyncError = exc
                if attempt == attempts or not keep_going(exc):
                    break
                delay = self.s.backoff * 2 ** (attempt - 1)
                log.warning(
                    "%s: %s (attempt %d of %d); retrying in %.1fs", what, exc, attempt, attempts, delay
                )
                time.sleep(delay)
        if isinstance(last, TransientError):
            note = f"; {gave_up}" if gave_up else ""
            raise TransferError(f"{last} (gave up after {attempts} attempts{note})") from None
        raise last

    def delete(self, dest: str) -> None:
        with FileLock(
            lock_path(self.s.state_dir, dest),
            dest,
            self.s.lock_stale_after,
            self.s.lock_log_every,
            self.s.lock_timeout,
        ):
            try:
                os.unlink(self.s.models_dir / dest)
            except FileNotFoundError:
                pass
            self.state.remove(dest)
            log.info("deleted %s (--delete: no longer selected)", dest)


def expect_for(item: Item, remote: RemoteObject) -> Expect:
    """What a fetched copy of `remote` is verified against. One store checksum is enough:
    OSS's CRC64, a full-object CRC32 where S3 keeps one, else the MD5 of a single-part ETag."""
    md5 = remote.md5 if remote.crc64 is None and remote.crc32 is None else None
    return Expect(remote.size, remote.crc64, md5, item.sha256 or remote.sha256, remote.crc32)


def with_listing(items: list[Item], listing: dict[str, RemoteObject], base) -> dict[str, RemoteObject]:
    """Remote objects for items whose source lies under a listed prefix."""
    out = {}
    for i in items:
        src = i.source
        if src.scheme == base.scheme and src.bucket == base.bucket:
            rel = src.key[len(base.key) :].lstrip("/") if base.key else src.key
            if (not base.key or src.key.startswith(base.key.rstrip("/") + "/")) and rel in listing:
                out[i.dest] = listing[rel]
    return out
