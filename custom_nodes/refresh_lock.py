"""Move every pin in custom_nodes/lock.yaml to its repository's current HEAD.

Needs network access to the repositories (`git ls-remote`). Only the `commit:` lines
change, so comments and order survive; review the diff, then rebuild the image: its
build-time check fails if a pack no longer loads.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

LOCK = Path(__file__).with_name("lock.yaml")


def head(repo: str) -> str:
    out = subprocess.run(["git", "ls-remote", repo, "HEAD"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0 or not out.stdout.strip():
        raise SystemExit(f"cannot reach {repo}: {out.stderr.strip() or 'no HEAD'}")
    return out.stdout.split()[0]


def main() -> int:
    lines = LOCK.read_text().splitlines(keepends=True)
    repo = None
    changed = 0
    for i, line in enumerate(lines):
        m = re.match(r"\s*(?:- name: .*|)repo: (\S+)", line)
        if m:
            repo = m.group(1)
            continue
        m = re.match(r"(\s*commit: )([0-9a-f]{40})", line)
        if m and repo:
            new = head(repo)
            if new != m.group(2):
                print(f"{repo}: {m.group(2)[:12]} -> {new[:12]}")
                lines[i] = f"{m.group(1)}{new}\n"
                changed += 1
            repo = None
    LOCK.write_text("".join(lines))
    print(f"{changed} pin(s) moved" if changed else "all pins are current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
