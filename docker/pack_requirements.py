"""Build step: write one requirements file for all packs (their own requirements.txt plus
the lock's extra `requirements`), for a single pip install under the torch constraints.
Usage: pack_requirements.py LOCK COMFYUI_DIR OUT"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml


def main(lock_path: str, comfy: str, out: str) -> int:
    lock = yaml.safe_load(Path(lock_path).read_text())
    lines = []
    for pack in lock["packs"]:
        req = Path(comfy) / "custom_nodes" / pack["name"] / "requirements.txt"
        if req.exists():
            lines.append(f"# {pack['name']}")
            lines += [l for l in req.read_text().splitlines() if l.strip() and not l.startswith("#")
                      and not l.split("=")[0].split(">")[0].split("<")[0].strip().lower().startswith("torch")]
        lines += pack.get("requirements", [])
    Path(out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
