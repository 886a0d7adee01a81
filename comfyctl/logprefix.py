"""Run a command with each output line prefixed by a name: `python -m comfyctl.logprefix
NAME -- CMD...`. Signals are passed on so supervisord's stop reaches the program."""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def main(argv: list[str]) -> int:
    name, sep, *cmd = argv
    if sep != "--" or not cmd:
        print("usage: python -m comfyctl.logprefix NAME -- COMMAND...", file=sys.stderr)
        return 2
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: proc.send_signal(s))
    prefix = f"[{name}] ".encode()
    out = sys.stdout.buffer
    assert proc.stdout is not None
    for line in iter(proc.stdout.readline, b""):
        out.write(prefix + line)
        out.flush()
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
