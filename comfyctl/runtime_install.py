"""ComfyUI's Python environment: the torch stack, then ComfyUI's and every pinned pack's
requirements at the versions docker/image-lock.txt names. One mechanism for the image
build (each step its own `RUN python3 -m comfyctl.runtime_install STEP`, so each is its own
cached layer) and for `comfyctl serve` without a checkout (comfyctl.bootstrap).

The torch stack comes first, from the variant's index, and its exact installed versions
become constraints: no pack may replace it. Everything else is installed under the image
lock (one resolution of ComfyUI, the packs and our own package; `make image-lock`).
Only the standard library and PyYAML, so Ubuntu's python3 can drive the venv's pip.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

# Installed first and pinned by constraints; a pack's own line for them would only invite
# pip to look elsewhere. Other torch-named packages (torchsde, torchdiffeq, ...) are
# ordinary dependencies and stay. xformers and sageattention are the CUDA variant's only.
TORCH_STACK = {"torch", "torchvision", "torchaudio", "xformers", "sageattention"}
# The server has no display: the GUI build of OpenCV (which three packs name) and the
# headless one (which rembg names) install into the same cv2 folder, and whichever comes
# last wins. Every request for the GUI build is read as the headless one.
RENAMED = {
    "opencv-python": "opencv-python-headless",
    "opencv-contrib-python": "opencv-contrib-python-headless",
}
TORCH_INDEX = {
    "cuda": "https://download.pytorch.org/whl/cu128",
    "cpu": "https://download.pytorch.org/whl/cpu",
}


def requirement_name(line: str) -> str:
    """The requirement's project name, normalized as PyPI compares names (PEP 503)."""
    return re.sub(r"[-_.]+", "-", re.split(r"[\s;<>=!~\[@]", line.strip(), maxsplit=1)[0].lower())


def renamed(line: str) -> str:
    name = requirement_name(line)
    if name not in RENAMED:
        return line
    spec = re.split(r"[\s;<>=!~\[@]", line.strip(), maxsplit=1)[0]
    return RENAMED[name] + line.strip()[len(spec) :]


def requirement_lines(path: Path) -> list[str]:
    """A requirements file's requirements, without comments, blanks and the torch stack."""
    return [
        renamed(line)
        for line in path.read_text().splitlines()
        if line.strip() and not line.startswith("#") and requirement_name(line) not in TORCH_STACK
    ]


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


def torch_versions(dockerfile: str) -> dict[str, str]:
    """The torch stack's versions: the Dockerfile's ARGs are where they are written."""
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", dockerfile, re.M))
    return {name: args[f"{name.upper()}_VERSION"] for name in sorted(TORCH_STACK)}


def parse_pins(pins: list[str]) -> dict[str, str]:
    """["torch==2.8.0", ...] -> {"torch": "2.8.0", ...}, the whole torch stack or an error."""
    versions = dict(p.split("==", 1) for p in pins if "==" in p)
    if set(versions) != TORCH_STACK:
        raise SystemExit(f"expected NAME==VERSION for each of {sorted(TORCH_STACK)}, got {pins}")
    return versions


def pip(python: Path, *args: str) -> None:
    subprocess.run([str(python), "-m", "pip", *args], check=True)


def install_torch(
    python: Path, variant: str, versions: dict[str, str], index: str | None, image_lock: Path
) -> None:
    """torch, torchvision, torchaudio from the variant's index, xformers (built for that
    torch) where CUDA is; SageAttention 1.x where CUDA is, from the ordinary index (PyPI has
    it, the PyTorch index does not): pure Python over Triton, which torch's CUDA build
    brings, declaring no dependencies, so it cannot bring another torch (and --no-deps
    keeps it so). Then their own dependencies (numpy, sympy, CUDA libraries, triton...) from
    the ordinary index at the image lock's versions: the PyTorch index carries copies of
    some of them, and a mirror of it may not."""
    stack = [f"{n}=={versions[n]}" for n in ("torch", "torchvision", "torchaudio")]
    if variant == "cuda":
        stack.append(f"xformers=={versions['xformers']}")
    pip(python, "install", "--no-deps", "--index-url", index or TORCH_INDEX[variant], *stack)
    if variant == "cuda":
        sage = f"sageattention=={versions['sageattention']}"
        pip(python, "install", "--no-deps", sage)
        stack.append(sage)
    pip(python, "install", "-c", str(image_lock), *stack)


def freeze_torch(python: Path, constraints: Path) -> None:
    """Append the installed torch stack's exact versions to the constraints file."""
    frozen = subprocess.run(
        [str(python), "-m", "pip", "freeze"], check=True, capture_output=True, text=True
    ).stdout.splitlines()
    pins = [line for line in frozen if requirement_name(line) in TORCH_STACK and "==" in line]
    with constraints.open("a") as f:
        f.write("".join(f"{p}\n" for p in pins))


def install_requirements(python: Path, comfy: Path, lock: Path, image_lock: Path, constraints: Path) -> None:
    """ComfyUI's requirements, then the packs', every one at the image lock's version."""
    freeze_torch(python, constraints)
    with tempfile.TemporaryDirectory() as tmp:
        for name, lines in (
            ("comfyui", requirement_lines(comfy / "requirements.txt")),
            ("packs", pack_requirements(lock, comfy)),
        ):
            req = Path(tmp, f"{name}.txt")
            req.write_text("\n".join(lines) + "\n")
            pip(python, "install", "-r", str(req), "-c", str(constraints), "-c", str(image_lock))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m comfyctl.runtime_install", description=__doc__.splitlines()[0]
    )
    p.add_argument("--python", type=Path, required=True, help="the interpreter whose environment is filled")
    sub = p.add_subparsers(dest="step", required=True)
    t = sub.add_parser("torch", help="the torch stack from the variant's index")
    t.add_argument("--variant", choices=sorted(TORCH_INDEX), required=True)
    t.add_argument(
        "--index-url", help="the PyTorch index (default: the variant's own on download.pytorch.org)"
    )
    t.add_argument("--image-lock", type=Path, required=True, help="docker/image-lock.txt")
    t.add_argument(
        "pins", nargs="+", help="torch==V torchvision==V torchaudio==V xformers==V sageattention==V"
    )
    r = sub.add_parser("requirements", help="ComfyUI's and the packs' requirements under the image lock")
    r.add_argument("--comfyui", type=Path, required=True)
    r.add_argument("--lock", type=Path, required=True, help="custom_nodes/lock.yaml")
    r.add_argument("--image-lock", type=Path, required=True, help="docker/image-lock.txt")
    r.add_argument(
        "--constraints", type=Path, required=True, help="custom_nodes/constraints.txt (appended to)"
    )
    args = p.parse_args(argv)
    try:
        if args.step == "torch":
            install_torch(
                args.python, args.variant, parse_pins(args.pins), args.index_url or None, args.image_lock
            )
        else:
            install_requirements(args.python, args.comfyui, args.lock, args.image_lock, args.constraints)
    except subprocess.CalledProcessError as exc:
        print(f"error: {' '.join(exc.cmd[:4])} ... exited {exc.returncode}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
