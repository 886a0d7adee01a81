"""Build-time check of what the node check cannot see: libraries the nodes load lazily, and
what the build must not leave behind. Run in the image (`python -m docker.check_image
--variant cuda|cpu`: the build passes its VARIANT).

- every import that a pack's patch (docker/patches/) moved into a node function resolves:
  those load when the node first runs, not when ComfyUI starts, so the node check cannot see
  them (the Hunyuan3D pipelines with rembg among them: with NUMBA_CACHE_DIR set, as the
  build sets it, this is also what fills numba's cache of pymatting's functions);
- pymeshlab loads all of its plugins: without a system library (libOpenGL) nine of them,
  mesh input and output among them, fail with a warning while the Hunyuan3D nodes still
  register; the check reads and writes a mesh through them;
- one OpenCV: the GUI and headless wheels install into the same cv2 folder;
- matplotlib's font cache is already built (else every start spends half a minute on it);
- in the CUDA variant, CUDA_VERSION names the CUDA runtime of the installed torch (the
  start checks the driver against it), and the attention backends COMFYUI_ATTENTION can
  name import (xformers built for the pinned torch, SageAttention over torch's Triton): no
  GPU is needed to import them, and a backend that fails here would stop every start that
  asks for it;
- the node check left no state in ComfyUI's own folders.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import importlib.util
import io
import os
import re
import sys
import tempfile
import types
from pathlib import Path

COMFYUI_DIR = Path(os.environ.get("COMFYUI_DIR", "/opt/ComfyUI"))
PATCHES = Path(__file__).resolve().parent / "patches"
# an added, indented (so inside a function) one-line import of a patch
MOVED_IMPORT = re.compile(r"^\+\s+(?:from\s+(\S+)\s+import\s+(.+?)|import\s+(\S+)(?:\s+as\s+\w+)?)\s*$")
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


def moved_imports(patch_text: str) -> list[tuple[str, list[str]]]:
    """(module, names) of each import a patch puts inside a function; names are empty for a
    plain `import module`."""
    found = []
    for line in patch_text.splitlines():
        m = MOVED_IMPORT.match(line)
        if m and m.group(1):
            found.append(
                (m.group(1), [n.split(" as ")[0].strip() for n in m.group(2).strip("()").split(",")])
            )
        elif m:
            found.append((m.group(3), []))
    return found


def deferred_import_problems(patches: Path = PATCHES, comfyui: Path = COMFYUI_DIR) -> list[str]:
    """Import, as the patched pack would when its node runs, each import its patch moved into
    a function, and look up each name it takes."""
    if str(comfyui) not in sys.path:
        sys.path.insert(0, str(comfyui))  # the packs import ComfyUI's own modules
    if (comfyui / "comfy" / "cli_args.py").is_file():
        # ComfyUI as the node check runs it (--cpu): no GPU at build, and its model management,
        # which the packs import, would look for one
        importlib.import_module("comfy.cli_args").args.cpu = True
    if "NUMBA_CACHE_DIR" not in os.environ and os.environ.get("COMFY_NUMBA_CACHE"):
        # in a running container: the image's cache, as each start copies it for ComfyUI
        from comfyctl.numba_cache import seed

        os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="numba-")
        seed(Path(os.environ["COMFY_NUMBA_CACHE"]), Path(os.environ["NUMBA_CACHE_DIR"]))
    found = []
    for patch in sorted(patches.glob("*/*.patch")):
        # the pack as a package (as ComfyUI loads it), without running its __init__
        package = "_patched_" + re.sub(r"\W", "_", patch.parent.name)
        if package not in sys.modules:
            module = types.ModuleType(package)
            module.__path__ = [str(comfyui / "custom_nodes" / patch.parent.name)]
            sys.modules[package] = module
        for name, attrs in dict.fromkeys((n, tuple(a)) for n, a in moved_imports(patch.read_text())):
            try:
                module = importlib.import_module(importlib.util.resolve_name(name, package))
                for attr in attrs:
                    getattr(module, attr)
            except Exception as exc:  # noqa: BLE001 - an import can fail in any way; report it
                found.append(
                    f"{patch.parent.name}: {name} {attrs} does not import: {type(exc).__name__}: {exc}"
                )
    return found


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
    found = (
        pymeshlab_problems()
        + attention_problems(variant)
        + cuda_version_problems(variant)
        + deferred_import_problems()
    )
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
            "check_image: the imports patched into node functions, pymeshlab plugins, OpenCV, "
            "matplotlib cache, attention backends and ComfyUI's folders are as expected"
        )
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
