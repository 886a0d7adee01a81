"""Build-time check of what the node check cannot see: libraries the nodes load lazily, and
what the build must not leave behind. Run in the image (`python -m docker.check_image
--variant cuda|cpu`: the build passes its VARIANT).

- pymeshlab loads all of its plugins: without a system library (libOpenGL) nine of them,
  mesh input and output among them, fail with a warning while the Hunyuan3D nodes still
  register; the check reads and writes a mesh through them;
- one OpenCV: the GUI and headless wheels install into the same cv2 folder;
- matplotlib's font cache is already built (else every start spends half a minute on it);
- in the CUDA variant, CUDA_VERSION names the CUDA runtime of the installed torch (the
  start checks the driver against it), and the attention backends COMFYUI_ATTENTION can name import (xformers
  built for the pinned torch, SageAttention over torch's Triton): no GPU is needed to import
  them, and a backend that fails here would stop every start that asks for it;
- the node check left no state in ComfyUI's own folders.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import io
import os
import sys
import tempfile
from pathlib import Path

COMFYUI_DIR = Path(os.environ.get("COMFYUI_DIR", "/opt/ComfyUI"))
TRIANGLE = "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"


def pymeshlab_problems() -> list[str]:
    out = io.StringIO()
    # pymeshlab prints the plugins it could not load (to stdout or stderr) and goes on
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        import pymeshlab
    problems = [l for l in out.getvalue().splitlines() if "nable to load" in l or ".so" in l]
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp, "t.obj"), Path(tmp, "t.ply")
        src.write_text(TRIANGLE)
        ms = pymeshlab.MeshSet()
        try:
            ms.load_new_mesh(str(src))
            ms.save_current_mesh(str(dst))
        except Exception as exc:  # noqa: BLE001 - pymeshlab raises its own untyped errors
            problems.append(f"pymeshlab cannot read and write a mesh: {exc}")
    return problems


def installed(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def attention_problems(variant: str) -> list[str]:
    # By the variant built, not by torch: the CPU variant may carry a CUDA build of torch
    # (the one a package index serves), and has neither backend; COMFYUI_ATTENTION is ignored
    # on the CPU.
    if variant != "cuda":
        return []
    found = []
    for module, name in (("xformers.ops", "memory_efficient_attention"), ("sageattention", "sageattn")):
        try:
            getattr(importlib.import_module(module), name)
        except Exception as exc:  # noqa: BLE001 - an import can fail in any way; report it
            found.append(f"{module}.{name} does not import: {type(exc).__name__}: {exc}")
    return found


def cuda_version_problems(variant: str) -> list[str]:
    """CUDA_VERSION (what the start compares the driver with) must be the runtime torch brings."""
    if variant != "cuda":
        return []
    import torch

    said, built = os.environ.get("CUDA_VERSION", ""), torch.version.cuda or ""
    if said.split(".")[:2] != built.split(".")[:2]:
        return [f"the image says CUDA_VERSION={said!r} but its torch is built for CUDA {built!r}"]
    return []


def problems(variant: str) -> list[str]:
    found = pymeshlab_problems() + attention_problems(variant) + cuda_version_problems(variant)
    opencv = [
        n
        for n in (
            "opencv-python",
            "opencv-python-headless",
            "opencv-contrib-python",
            "opencv-contrib-python-headless",
        )
        if installed(n)
    ]
    if len(opencv) != 1:
        found.append(f"expected one OpenCV distribution, found {opencv}")
    import matplotlib

    cache = Path(matplotlib.get_cachedir())
    if not list(cache.glob("fontlist-*.json")):
        found.append(f"matplotlib's font cache is not built in {cache}")
    # (input/ and output/ are in ComfyUI's repository; user/ and temp/ only appear when it runs)
    for leftover in ("user", "temp"):
        if (COMFYUI_DIR / leftover).exists():
            found.append(f"{COMFYUI_DIR / leftover} was left behind by the build")
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m docker.check_image", description=__doc__.splitlines()[0])
    p.add_argument(
        "--variant", choices=("cuda", "cpu"), default="cpu", help="the image's variant (default: cpu)"
    )
    found = problems(p.parse_args(argv).variant)
    for p in found:
        print(f"check_image: {p}", file=sys.stderr)
    if not found:
        print(
            "check_image: pymeshlab plugins, OpenCV, matplotlib cache, attention backends and "
            "ComfyUI's folders are as expected"
        )
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
