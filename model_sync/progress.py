"""Progress: rich bars on a terminal, JSON lines otherwise, and the progress file.

This module owns the progress file: where it is (`path_for`), its format (`Snapshot`), and
how it is read (`read`), by the sync that writes it and by the proxy's starting page and
/readyz that show it. It is rewritten atomically at most once a second.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from comfy_stack.files import read_json, write_json

from .shown import printable

if TYPE_CHECKING:  # rich is imported only when a terminal shows the bars
    from rich.progress import Progress as RichProgress
    from rich.progress import TaskID

log = logging.getLogger(__name__)
# The models directory in the image, where the proxy looks when nothing says otherwise.
IMAGE_MODELS_DIR = Path("/data/models")


def path_for(models_dir: Path) -> Path:
    return models_dir / ".model_sync" / "progress.json"


@dataclass(frozen=True)
class FileProgress:
    path: str
    bytes_done: int
    bytes_total: int


@dataclass(frozen=True)
class Snapshot:
    """The progress file's content: `state` is planning, running, done or failed."""

    state: str = "planning"
    bytes_done: int = 0
    bytes_total: int = 0
    files_done: int = 0
    files_total: int = 0
    current: tuple[FileProgress, ...] = ()
    errors: tuple[str, ...] = ()
    updated_at: float = field(default=0.0, compare=False)

    def to_json(self) -> dict:
        return asdict(self) | {"current": [asdict(c) for c in self.current], "errors": list(self.errors)}

    def summary(self) -> dict:
        """The counters alone: what /readyz and the JSON log lines report."""
        return {
            k: getattr(self, k) for k in ("state", "bytes_done", "bytes_total", "files_done", "files_total")
        }

    def waiting_for(self) -> str | None:
        """What a start waiting on this sync waits for, in words (/readyz), or None when it
        is not running."""
        if self.state not in ("planning", "running"):
            return None
        return (
            f"syncing models: {self.bytes_done / 1e9:.1f} of {self.bytes_total / 1e9:.1f} GB "
            f"({self.files_done} of {self.files_total} files)"
        )

    @classmethod
    def from_json(cls, data: dict) -> Snapshot:
        """ValueError (or TypeError) when the file is not what this module writes."""
        return cls(
            str(data["state"]),
            int(data["bytes_done"]),
            int(data["bytes_total"]),
            int(data["files_done"]),
            int(data["files_total"]),
            tuple(
                FileProgress(str(c["path"]), int(c["bytes_done"]), int(c["bytes_total"]))
                for c in data.get("current") or ()
            ),
            tuple(str(e) for e in data.get("errors") or ()),
            float(data.get("updated_at") or 0),
        )


def read(path: Path) -> Snapshot | None:
    """The sync's progress, or None when there is none (no sync yet) or it is unreadable."""
    data = read_json(path)
    if data is None:
        return None
    try:
        return Snapshot.from_json(data)
    except (KeyError, TypeError, ValueError):
        return None


class Progress:
    def __init__(self, path: Path | None, interval: float, tty: bool | None = None, stream=None):
        """`path` None: no progress file (`pin` reads sources only)."""
        self.path, self.interval = path, interval
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self._lock = threading.Lock()
        self.state = "planning"
        self.bytes_done = self.bytes_total = self.files_done = self.files_total = 0
        self.current: dict[str, list[int]] = {}
        self.errors: list[str] = []
        self.transferred = 0  # bytes that crossed the network (not counting verification)
        self._last_file = self._last_line = 0.0
        self._rich: RichProgress | None = None
        self._tasks: dict[str, TaskID] = {}

    # --- events -----------------------------------------------------------------------------
    def planning(self) -> None:
        """Say so in the progress file at once: listing thousands of files takes a moment."""
        self._emit(force=True)

    def begin(self, files_total: int, bytes_total: int) -> None:
        with self._lock:
            self.state, self.files_total, self.bytes_total = "running", files_total, bytes_total
        if self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, TimeRemainingColumn, TransferSpeedColumn
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(
                "{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(file=self.stream, force_terminal=True),
                transient=False,
            )
            self._rich.start()
            self._tasks["*"] = self._rich.add_task("total", total=bytes_total)
        self._emit(force=True)

    def start_file(self, dest: str, size: int) -> None:
        from rich.markup import escape  # a name is text, never rich's [markup]

        with self._lock:
            self.current[dest] = [0, size]
            if self._rich:
                self._tasks[dest] = self._rich.add_task(escape(printable(dest)), total=size)
        self._emit()

    def advance(self, dest: str, n: int, network: bool = True) -> None:
        with self._lock:
            cur = self.current.get(dest)
            if cur is not None:
                # bytes of a failed range are fetched again: never count past the file's size
                n_done = max(0, min(n, cur[1] - cur[0]))
                cur[0] += n_done
            else:
                n_done = n
            self.bytes_done += n_done
            if network:
                self.transferred += n
            if self._rich:
                if dest in self._tasks:
                    self._rich.update(self._tasks[dest], advance=n_done)
                self._rich.update(self._tasks["*"], advance=n_done)
        self._emit()

    def rewind(self, dest: str, size: int | None = None) -> None:
        """A fetch starts over (verification failed, or the source changed to an object of
        `size` bytes): its bytes no longer count as done."""
        with self._lock:
            cur = self.current.get(dest)
            if cur is not None:
                self.bytes_done -= cur[0]
                cur[0] = 0
                if size is not None:
                    self.bytes_total += size - cur[1]
                    cur[1] = size
                if self._rich and dest in self._tasks:
                    self._rich.reset(self._tasks[dest], total=cur[1])
                    self._rich.update(self._tasks["*"], total=self.bytes_total)

    def finish_file(self, dest: str, size: int) -> None:
        with self._lock:
            cur = self.current.pop(dest, None)
            self.bytes_done += size - (cur[0] if cur else 0)
            self.files_done += 1
            if self._rich and dest in self._tasks:
                self._rich.remove_task(self._tasks.pop(dest))
        self._emit()

    def error(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)
        self._emit(force=True)

    def end(self, ok: bool) -> None:
        with self._lock:
            self.state = "done" if ok else "failed"
        if self._rich:
            self._rich.stop()
            self._rich = None
        self._emit(force=True)

    # --- output -----------------------------------------------------------------------------
    def now(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                self.state,
                self.bytes_done,
                self.bytes_total,
                self.files_done,
                self.files_total,
                tuple(FileProgress(p, c[0], c[1]) for p, c in sorted(self.current.items())),
                tuple(self.errors),
                time.time(),
            )

    def snapshot(self) -> dict:
        """What the progress file holds now."""
        return self.now().to_json()

    def _emit(self, force: bool = False) -> None:
        now = time.monotonic()
        write_file = self.path is not None and (force or now - self._last_file >= 1.0)
        write_line = not self.tty and (force or now - self._last_line >= self.interval)
        if not (write_file or write_line):
            return
        snap = self.now()
        if write_file and self.path is not None:
            self._last_file = now
            try:
                write_json(self.path, snap.to_json(), fsync=False)
            except OSError as exc:
                log.warning("cannot write progress file %s: %s", self.path, exc)
        if write_line:
            self._last_line = now
            line = snap.summary() | {"current": [c.path for c in snap.current]}
            print(json.dumps({"progress": line}), file=self.stream, flush=True)
