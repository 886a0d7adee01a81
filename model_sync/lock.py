"""One lock per target file, safe on shared volumes where flock() is not.

Two pods syncing into one shared volume (NFS, a CSI-mounted bucket) cannot rely on
flock/fcntl: many network filesystems ignore them or emulate them per client. filelock's
SoftFileLock uses O_CREAT|O_EXCL creation of a marker file holding pid and host, which
such filesystems do honour, and breaks a marker whose owner is provably dead on this host.
A holder on *another* host cannot be probed, so we add a lease: the holder touches the
marker every `stale_after / 4` seconds (a heartbeat thread) and SoftFileLock's `lifetime`
lets a waiter break a marker whose heartbeat stopped for `stale_after` seconds (a pod that
was evicted mid-download). One thread per process beats for every lock it holds, so a
run of thousands of small files does not start and join a thread per file.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from pathlib import Path

from filelock import SoftFileLock, Timeout

from .errors import LockTimeoutError

log = logging.getLogger(__name__)


class FileLock:
    def __init__(self, path: Path, what: str, stale_after: float, log_every: float, timeout: float):
        self.path, self.what = path, what
        self.stale_after, self.log_every, self.timeout = stale_after, log_every, timeout
        with warnings.catch_warnings():
            # filelock warns that an age-based lifetime can overlap a live holder; the
            # heartbeat below is what keeps a live holder's marker young.
            warnings.simplefilter("ignore")
            self._lock = SoftFileLock(str(path), lifetime=stale_after, thread_local=False)

    def __enter__(self) -> FileLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        while True:
            slice_ = max(0.05, min(self.log_every, self.timeout - (time.monotonic() - start)))
            try:
                self._lock.acquire(timeout=slice_)
                break
            except Timeout:
                waited = time.monotonic() - start
                if waited >= self.timeout:
                    raise LockTimeoutError(
                        f"gave up after {waited:.0f}s waiting for {self.what} (lock {self.path}, "
                        f"held by {self._holder()}); if no other sync is running, delete the lock "
                        "file, or raise MODEL_SYNC_LOCK_TIMEOUT"
                    ) from None
                log.info(
                    "still waiting for %s: another process holds %s (%s), %.0fs so far",
                    self.what,
                    self.path.name,
                    self._holder(),
                    waited,
                )
        _HEARTBEAT.add(self)
        return self

    def __exit__(self, *exc) -> None:
        _HEARTBEAT.remove(self)
        self._lock.release()

    def _holder(self) -> str:
        try:  # never through a link, never blocking on a FIFO planted at the lock's name
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as f:
                lines = f.read(1024).decode("utf-8", "replace").split()
        except OSError:
            return "unknown"
        return f"pid {lines[0]} on {lines[1]}" if len(lines) >= 2 else "unknown"


class _Heartbeat:
    """Touches the marker of every lock this process holds at least every `stale_after / 4`
    seconds of that lock (all of them at the shortest interval among those held)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._held: set[FileLock] = set()
        self._thread: threading.Thread | None = None

    def add(self, lock: FileLock) -> None:
        with self._cond:
            self._held.add(lock)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lock-heartbeat", daemon=True)
                self._thread.start()
            self._cond.notify()  # its interval may be shorter than the one waited for

    def remove(self, lock: FileLock) -> None:
        with self._cond:
            self._held.discard(lock)

    def _run(self) -> None:
        last = time.monotonic()
        while True:
            with self._cond:
                while not self._held:
                    self._cond.wait()
                    last = time.monotonic()
                left = last + min(lock.stale_after for lock in self._held) / 4 - time.monotonic()
                if left > 0:
                    self._cond.wait(left)  # woken early by a new lock: recompute, touch nothing
                    continue
                due = list(self._held)
            last = time.monotonic()
            for lock in due:
                try:
                    os.utime(lock.path, follow_symlinks=False)  # a link's target is not ours
                except FileNotFoundError:
                    pass  # released (and removed) since the list was taken
                except OSError as exc:
                    log.warning("cannot refresh lock %s: %s", lock.path, exc)


_HEARTBEAT = _Heartbeat()


def lock_path(state_dir: Path, dest: str) -> Path:
    return state_dir / "locks" / f"{dest}.lock"
