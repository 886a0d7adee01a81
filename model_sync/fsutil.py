"""Atomic file writes and the hidden names model_sync uses next to a model file."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

PARTIAL_SUFFIX = ".msync-part"


def partial_path(final: Path) -> Path:
    """Where a file's bytes accumulate before verification.

    Hidden and with a suffix ComfyUI does not list, in the target folder so the final rename
    is atomic (same filesystem). Its name is stable, not random, so that a later process can
    resume it; the per-file lock guarantees a single writer.
    """
    return final.with_name(f".{final.name}{PARTIAL_SUFFIX}")


def write_atomic(path: Path, data: bytes, fsync: bool = True, mode: int | None = None) -> None:
    """Replace `path` with `data` in one step; `mode` (else mkstemp's 0600) for the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
        tmp = None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass


def write_json(path: Path, obj: object, fsync: bool = True) -> None:
    write_atomic(path, json.dumps(obj, sort_keys=True).encode(), fsync)


def read_json(path: Path) -> dict | None:
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
