"""Write docker/image-lock.txt: one exact version for every Python package the image
installs besides the torch stack, resolved together for the image's Python and platform.

ComfyUI's and the packs' requirement files are mostly unpinned, so without this two builds
a month apart get different transformers, diffusers, opencv... and our own package's pins
(constraints.txt, made for the development venv) could move a package a pack needs. One
resolution of everything (ComfyUI, every pinned pack with the lock's extra requirements,
our own dependencies, under custom_nodes/constraints.txt and the Dockerfile's torch
versions) gives a set that satisfies all of them at once; the Dockerfile installs every
step under it and ends with `pip check`.

uv does the resolving (`uv pip compile` for another interpreter version and platform,
from PyPI alone: pip can only resolve for a foreign platform from wheels, and oss2 and
its Alibaba Cloud dependencies publish source archives only); this script only gathers
the inputs and writes the result. Needs network access to PyPI and a ComfyUI checkout holding the pinned
packs (as in the image, or laid out by `python -m comfyctl.sources`):

    python -m docker.lock_image COMFYUI_DIR            # or: make image-lock COMFYUI_DIR=...
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib

from comfyctl.runtime_install import pack_requirements, requirement_lines, requirement_name, torch_versions

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "docker" / "image-lock.txt"
# Ubuntu 24.04's python3, the interpreter of both image variants.
PYTHON_VERSION = "3.12"
# Ubuntu 24.04 has glibc 2.39: wheels for any manylinux tag up to it install there.
PLATFORM = "x86_64-manylinux_2_39"
UV = str(Path(sys.executable).with_name("uv"))
# Installed from the variant's own index (CUDA or CPU builds) before anything else, so
# they and their CUDA libraries are not part of the lock.
VARIANT_SPECIFIC = re.compile(r"^(torch|torchvision|torchaudio|xformers|sageattention|triton|nvidia-.*)$")


def torch_pins(dockerfile: str) -> list[str]:
    versions = torch_versions(dockerfile)
    order = ("torch", "torchvision", "torchaudio", "xformers", "sageattention")
    return [f"{name}=={versions[name]}" for name in order]


def requirements(comfy: Path) -> list[str]:
    """What the Dockerfile installs besides the torch stack: ComfyUI's requirements, the
    packs' (comfyctl.runtime_install, as in the build), and our own package's dependencies."""
    packs = pack_requirements(REPO / "custom_nodes/lock.yaml", comfy)
    return (
        requirement_lines(comfy / "requirements.txt")
        + [l for l in packs if not l.startswith("#")]
        + tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    )


def resolve(reqs: list[str], pins: list[str]) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        req_file, out = Path(tmp, "req.txt"), Path(tmp, "lock.txt")
        req_file.write_text("\n".join(reqs + pins) + "\n")
        cmd = [
            UV,
            "pip",
            "compile",
            str(req_file),
            "-c",
            str(REPO / "custom_nodes/constraints.txt"),
            "--python-version",
            PYTHON_VERSION,
            "--python-platform",
            PLATFORM,
            "--index-url",
            "https://pypi.org/simple",
            "--no-header",
            "--no-annotate",
            "--quiet",
            "-o",
            str(out),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"could not resolve the image's requirements:\n{done.stderr[-4000:]}")
        pairs = re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", out.read_text(), re.M)
    return dict(pairs)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not (Path(argv[0]) / "main.py").is_file():
        print(__doc__, file=sys.stderr)
        return 2
    comfy = Path(argv[0])
    pins = torch_pins((REPO / "docker/Dockerfile").read_text())
    versions = resolve(requirements(comfy), pins)
    lines = [
        f"{name}=={version}"
        for name, version in sorted(versions.items(), key=lambda kv: kv[0].lower())
        if not VARIANT_SPECIFIC.match(requirement_name(name))
    ]
    OUT.write_text(
        "# Written by docker/lock_image.py; every Python package of the image except the\n"
        f"# torch stack ({', '.join(pins)}), for Python {PYTHON_VERSION} on x86_64.\n"
        + "\n".join(lines)
        + "\n"
    )
    print(f"{OUT.relative_to(REPO)}: {len(lines)} packages")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
