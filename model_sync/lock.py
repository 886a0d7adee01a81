"""One lock per target file, safe on shared volumes where flock() is not.

Two pods syncing into one shared volume (NFS, a CSI-mounted bucket) cannot rely on
flock/fcntl: many network filesystems ignore them or emulate them per client. filelock's
SoftFileLock uses O_CREAT|O_EXCL creation of a marker file holding pid and host, which
such filesystems do honour, and breaks a marker whose owner is provably dead on this host.
A holder on *another* host cannot be probed, so we add a lease: the holder touches the
marker every `stale_after / 4` seconds (a heartbeat thread) and SoftFileLock's `lifetime`
lets a waiter break a marker whose heartbeat stopped for `stale_after` seconds (a pod that
was evicted mid-download).
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
    def __init__(self, path: Path, what: str, stale_after: float, log_every: float,
                 timeout: float):
        self.path, self.what = path, what
        self.stale_after, self.log_every, self.timeout = stale_after, log_every, timeout
        with warnings.catch_warnings():
            # filelock warns that an age-based lifetime can overlap a live holder; the
            # heartbeat below is what keeps a live holder's marker young.
            warnings.simplefilter("ignore")
            self._lock = SoftFileLock(str(path), lifetime=stale_after, thread_local=False)
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

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
                        "file, or raise MODEL_SYNC_LOCK_TIMEOUT") from None
                log.info("still waiting for %s: another process holds %s (%s), %.0fs so far",
                         self.what, self.path.name, self._holder(), waited)
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name=f"lock-heartbeat {self.what}",
                                      daemon=True)
        self._beat.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        self._lock.release()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.stale_after / 4):
            try:
                os.utime(self.path)
            except OSError as exc:
                log.warning("cannot refresh lock %s: %s", self.path, exc)

    def _holder(self) -> str:
        try:
            lines = self.path.read_text().split()
        except OSError:
            return "unknown"
        return f"pid {lines[0]} on {lines[1]}" if len(lines) >= 2 else "unknown"


def lock_path(state_dir: Path, dest: str) -> Path:
    return state_dir / "locks" / f"{dest}.lock"
