"""Start a command beside this process without waiting for it."""

from __future__ import annotations

import subprocess


def orphan(cmd: list[str]) -> None:
    """Run `cmd` in the background as an orphan: `sh -c 'cmd &'` exits at once, so the
    command outlives this process (which `comfyctl serve` replaces with supervisord) and is
    reaped by the init process, not left to supervisord as a child it does not know."""
    subprocess.run(["sh", "-c", '"$@" &', "sh", *cmd], check=False)
