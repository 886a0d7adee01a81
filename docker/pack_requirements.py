"""Build step: write one requirements file for all packs (their own requirements.txt plus
the lock's extra `requirements`), for a single pip install under the torch constraints.
Usage: pack_requirements.py LOCK COMFYUI_DIR OUT"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml


# Installed first from the variant's index and pinned by constraints; a pack's own line
# for them would only invite pip to look elsewhere. Other torch-named packages (torchsde,
# torchdiffeq, ...) are ordinary dependencies and stay.
TORCH_STACK = {"torch", "torchvision", "torchaudio", "xformers"}


def requirement_name(line: str) -> str:
    """The requirement's project name, normalized as PyPI compares names (PEP 503)."""
    return re.sub(r"[-_.]+", "-", re.split(r"[\s;<>=!~\[@]", line.strip(), maxsplit=1)[0].lower())


def requirement_lines(path: Path) -> list[str]:
    """A requirements file's requirements, without comments, blanks and the torch stack."""
    return [l for l in path.read_text().splitlines()
            if l.strip() and not l.startswith("#") and requirement_name(l) not in TORCH_STACK]


def pack_requirements(lock_path: Path, comfy: Path) -> list[str]:
    """Every pinned pack's requirements (under a `# <pack>` line) and the lock's extras."""
    lock = yaml.safe_load(lock_path.read_text())
    lines = []
    for pack in lock["packs"]:
        req = comfy / "custom_nodes" / pack["name"] / "requirements.txt"
        if req.exists():
            lines.append(f"# {pack['name']}")
            lines += requirement_lines(req)
        lines += pack.get("requirements", [])
    return lines


def main(lock_path: str, comfy: str, out: str) -> int:
    Path(out).write_text("\n".join(pack_requirements(Path(lock_path), Path(comfy))) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
