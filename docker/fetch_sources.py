"""Build step: clone ComfyUI and every pack of custom_nodes/lock.yaml at its pinned commit.

Usage: fetch_sources.py LOCK DEST   ->  DEST/ComfyUI, DEST/ComfyUI/custom_nodes/<pack>
A shallow fetch of exactly the pinned commit: a moved branch can never change the image.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml


def clone(repo: str, commit: str, dest: Path) -> None:
    dest.mkdir(parents=True)
    git = ["git", "-C", str(dest)]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["remote", "add", "origin", repo], check=True)
    subprocess.run(git + ["fetch", "-q", "--depth", "1", "origin", commit], check=True)
    subprocess.run(git + ["checkout", "-q", "FETCH_HEAD"], check=True)
    got = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    if got != commit:
        raise SystemExit(f"{repo}: got {got}, lock says {commit}")


def main(lock_path: str, dest: str) -> int:
    lock = yaml.safe_load(Path(lock_path).read_text())
    root = Path(dest) / "ComfyUI"
    clone(lock["comfyui"]["repo"], lock["comfyui"]["commit"], root)
    for pack in lock["packs"]:
        clone(pack["repo"], pack["commit"], root / "custom_nodes" / pack["name"])
        print(f"{pack['name']} @ {pack['commit'][:12]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
