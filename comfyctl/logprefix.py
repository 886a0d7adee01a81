"""Run a command with each output line prefixed by a name: `python -m comfyctl.logprefix
NAME [--timeline FILE] -- CMD...`. Signals are passed on so supervisord's stop reaches the
program. With --timeline (ComfyUI's program), ComfyUI's start is timed phase by phase from
its own log lines into FILE (comfy_stack.startup), anew at each start."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from comfy_stack.startup import ComfyUIWatcher

USAGE = "usage: python -m comfyctl.logprefix NAME [--timeline FILE] -- COMMAND..."


def main(argv: list[str]) -> int:
    name, *rest = argv or [""]
    timeline = None
    if rest[:1] == ["--timeline"] and len(rest) > 1:
        timeline, rest = Path(rest[1]), rest[2:]
    if not name or rest[:1] != ["--"] or len(rest) < 2:
        print(USAGE, file=sys.stderr)
        return 2
    cmd = rest[1:]
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format=f"[{name}] %(message)s")
    # timed from before the child exists: its interpreter's own start is part of the wait
    watcher = ComfyUIWatcher(timeline) if timeline else None
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: proc.send_signal(s))
    prefix = f"[{name}] ".encode()
    out = sys.stdout.buffer
    assert proc.stdout is not None
    for line in iter(proc.stdout.readline, b""):
        out.write(prefix + line)
        out.flush()
        if watcher:
            watcher.feed(line.decode("utf-8", "replace"))
            sys.stdout.flush()
    return proc.wait()


if __name__ == "__main__":
    code = main(sys.argv[1:])
    # a child killed by a signal: exit the same way so supervisord sees the same thing
    # ("terminated by SIGTERM", an expected stop), with our forwarding handler out of the way:
    # else the signal is caught and the exit status is 256 - 15
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    raise SystemExit(code)
