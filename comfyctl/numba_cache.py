"""numba's cache of compiled functions, built with the image, made usable by ComfyUI.

The Hunyuan3D pack imports rembg, which imports pymatting, whose functions numba compiles
at import (`@njit(signature, cache=True)`: about 33 s on 2 cores, at every start of a new
container) unless its cache already holds them. The image's build compiles them once into
a folder of its own (COMFY_NUMBA_CACHE) for numba's generic CPU (NUMBA_CPU_NAME=generic in
the image): numba keys each cached function by the CPU it was compiled for, so a cache
built for the build machine's own CPU would miss on any other model; the generic target
runs on every x86-64 CPU.

numba only uses a cache folder that it can write to (it creates a file there first, and
silently compiles into another folder when that fails), and the image's folders are
read-only to uid 1000 (and to a pod with readOnlyRootFilesystem). So each start copies
the image's cache into the run folder, where a function numba compiles later is kept too;
a marker of what was copied makes a later start of the same image copy nothing.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

from comfy_stack.files import SHARED, copy_atomic, write_atomic

log = logging.getLogger(__name__)
MARKER = ".seeded-from"


def files_of(src: Path) -> list[Path]:
    return sorted(p for p in src.rglob("*") if p.is_file())


def fingerprint(src: Path, files: list[Path] | None = None) -> str:
    """What the image's cache holds: each file's name, size and time."""
    h = hashlib.sha256()
    for f in files_of(src) if files is None else files:
        st = f.stat()
        h.update(f"{f.relative_to(src)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def seed(src: Path, dest: Path) -> int:
    """Make `dest` a writable copy of the cache in `src`; returns how many files were copied
    (0 when `dest` already holds this very cache)."""
    files = files_of(src)  # listed once: the fingerprint and the copy see the same files
    mark = fingerprint(src, files)
    marker = dest / MARKER
    if marker.is_file() and marker.read_text() == mark:
        return 0
    # another image's cache (or none): start from this one, not a mix of both
    shutil.rmtree(dest, ignore_errors=True)
    copied = 0
    for f in files:
        copy_atomic(f, dest / f.relative_to(src), mode=SHARED)
        copied += 1
    write_atomic(marker, mark, mode=SHARED, fsync=False)
    log.info("numba cache: %d files from %s in %s", copied, src, dest)
    return copied
