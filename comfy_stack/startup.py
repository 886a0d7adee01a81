"""The start in timed phases, so that a slow start says why and what it is waiting for.

Two files in the run folder (`<data>/run`), each with one writer:
- `start.json`: `comfyctl serve`'s own phases (settings, data folders, model sync, ...),
  written as each one begins and ends, before supervisord takes over;
- `comfyui-start.json`: ComfyUI's, read off its own log lines by the log prefixer
  (`comfyctl.logprefix`), begun anew each time ComfyUI starts (a crash's restart too), with
  each pack's import time from ComfyUI's "Import times for custom nodes" list.
/readyz, the container's log and `comfyctl doctor` read them (`read`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from comfy_stack.files import SHARED, read_json, write_json

log = logging.getLogger(__name__)

SERVE_FILE = "start.json"
COMFYUI_FILE = "comfyui-start.json"

# ComfyUI's start as its log shows it (main.py, nodes.py, server.py at the pinned commit):
# each phase ends at the first line that starts with its marker. Prestartup scripts (Manager
# has one) run first; then main.py's imports (torch among them) until it logs the Python
# version; then the built-in and custom nodes until the import-times list; then the
# database and routes until the server listens.
COMFYUI_PHASES = (
    ("prestartup scripts", ("Prestartup times for custom nodes:",)),
    ("importing torch and ComfyUI", ("Python version:",)),
    (
        "loading nodes and custom node packs",
        ("Import times for custom nodes:", "Skipping loading of custom nodes"),
    ),
    ("starting the server", ("To see the GUI go to:",)),
)
# "   0.3 seconds: /opt/ComfyUI/custom_nodes/ComfyUI-KJNodes" (nodes.py's format)
PACK_LINE = re.compile(r"^\s*(\d+(?:\.\d+)?) seconds( \(IMPORT FAILED\))?: (.+?)\s*$")


@dataclass
class Phase:
    name: str
    started_at: float  # wall clock, so that two processes' phases line up
    seconds: float | None = None  # None while it runs

    def to_json(self) -> dict:
        return {"name": self.name, "started_at": self.started_at, "seconds": self.seconds}


@dataclass
class Timeline:
    """One program's start: its phases in order and, for ComfyUI, each pack's import time."""

    phases: list[Phase] = field(default_factory=list)
    packs: dict[str, float] = field(default_factory=dict)
    failed_packs: list[str] = field(default_factory=list)
    done: bool = False

    def running(self) -> Phase | None:
        return next((p for p in self.phases if p.seconds is None), None)

    def total(self) -> float:
        return round(sum(p.seconds or 0.0 for p in self.phases), 3)

    def to_json(self) -> dict:
        return {
            "phases": [p.to_json() for p in self.phases],
            "packs": self.packs,
            "failed_packs": self.failed_packs,
            "done": self.done,
        }

    @classmethod
    def from_json(cls, data: dict) -> Timeline:
        """ValueError, TypeError or KeyError when the file is not what this module writes."""
        return cls(
            [
                Phase(
                    str(p["name"]),
                    float(p["started_at"]),
                    None if p["seconds"] is None else float(p["seconds"]),
                )
                for p in data["phases"]
            ],
            {str(k): float(v) for k, v in (data.get("packs") or {}).items()},
            [str(n) for n in data.get("failed_packs") or ()],
            bool(data.get("done")),
        )

    def summary(self) -> list[dict]:
        """Name and seconds of each phase (a running one: seconds so far), for /readyz."""
        now = time.time()
        return [
            {
                "name": p.name,
                "seconds": p.seconds,
                **({"running_for": round(now - p.started_at, 1)} if p.seconds is None else {}),
            }
            for p in self.phases
        ]


def read(path: Path) -> Timeline | None:
    data = read_json(path)
    if data is None:
        return None
    try:
        return Timeline.from_json(data)
    except (ValueError, TypeError, KeyError):
        return None


def _save(path: Path | None, timeline: Timeline) -> None:
    if path is None:
        return
    try:
        # no fsync: a start's timings are worth a redo, not a disk flush each
        write_json(path, timeline.to_json(), mode=SHARED, fsync=False)
    except OSError as exc:
        log.warning("could not write the start's timings to %s: %s", path, exc)


class Recorder:
    """`comfyctl serve`'s phases: `with rec.phase("model sync"): ...` logs and records each."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.timeline = Timeline()

    def attach(self, path: Path) -> None:
        """Start writing to `path` (known once the settings are read), phases so far included."""
        self.path = path
        _save(path, self.timeline)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        p = Phase(name, time.time())
        self.timeline.phases.append(p)
        _save(self.path, self.timeline)
        started = time.monotonic()
        try:
            yield
        finally:
            p.seconds = round(time.monotonic() - started, 3)
            _save(self.path, self.timeline)
            log.info("start: %s took %.2f s", name, p.seconds)

    def finish(self) -> None:
        self.timeline.done = True
        _save(self.path, self.timeline)
        log.info(
            "start: %s before supervisord (%s)",
            f"{self.timeline.total():.2f} s",
            ", ".join(f"{p.name} {p.seconds:.2f} s" for p in self.timeline.phases if p.seconds is not None),
        )


class ComfyUIWatcher:
    """ComfyUI's phases from its log lines, fed one at a time by the log prefixer."""

    def __init__(self, path: Path | None, now: float | None = None) -> None:
        self.path = path
        self.timeline = Timeline([Phase(COMFYUI_PHASES[0][0], time.time() if now is None else now)])
        self._in_pack_list = False
        _save(path, self.timeline)

    def feed(self, line: str, now: float | None = None) -> None:
        if self.timeline.done:
            return
        if self._in_pack_list:
            m = PACK_LINE.match(line)
            if m:
                name = Path(m.group(3)).name
                self.timeline.packs[name] = float(m.group(1))
                if m.group(2):
                    self.timeline.failed_packs.append(name)
                return
            self._in_pack_list = False
            _save(self.path, self.timeline)  # the list is complete: /readyz and doctor see it now
        running = self.timeline.running()
        start = next(i for i, (name, _) in enumerate(COMFYUI_PHASES) if running and name == running.name)
        for i in range(start, len(COMFYUI_PHASES)):
            # at the line's start: ComfyUI-Manager's prestartup prints "** Python version: ..."
            if line.lstrip().startswith(COMFYUI_PHASES[i][1]):
                self._end_at(i, time.time() if now is None else now)
                self._in_pack_list = "Import times for custom nodes" in line
                return

    def _end_at(self, index: int, now: float) -> None:
        """Phase `index` has just ended: the running phase takes its name (the phases between
        printed nothing: e.g. no pack has a prestartup script), and the next one begins."""
        running = self.timeline.running()
        assert running is not None
        running.name = COMFYUI_PHASES[index][0]
        running.seconds = round(now - running.started_at, 3)
        if index + 1 < len(COMFYUI_PHASES):
            self.timeline.phases.append(Phase(COMFYUI_PHASES[index + 1][0], now))
        else:
            self.timeline.done = True
            slowest = sorted(self.timeline.packs.items(), key=lambda kv: -kv[1])[:3]
            log.info(
                "ComfyUI answers after %.2f s (%s)%s",
                self.timeline.total(),
                ", ".join(f"{p.name} {p.seconds:.2f} s" for p in self.timeline.phases),
                "; slowest packs: " + ", ".join(f"{n} {s:.1f} s" for n, s in slowest) if slowest else "",
            )
        _save(self.path, self.timeline)


def waiting_for(serve: Timeline | None, comfyui: Timeline | None) -> str | None:
    """What the start waits for now, in words: the running phase and how long it has run."""
    for who, t in (("start", serve), ("ComfyUI", comfyui)):
        if t is not None and not t.done and (p := t.running()) is not None:
            return f"{who}: {p.name} ({time.time() - p.started_at:.1f} s so far)"
    return None
