"""Writing files so that a crash or a kill never leaves half of one under its final name.

Every write goes to a unique temp file in the destination folder (same filesystem, so the
rename is atomic), is flushed and fsynced, gets its permission bits, and only then replaces
the destination with `os.replace`; the temp file is removed in `finally` whatever happens.
A unique name (not `dest + ".tmp"`) keeps two writers from clobbering each other's temp file.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

# mkstemp's own mode: a file stays private unless its writer says otherwise.
PRIVATE = 0o600
SHARED = 0o644


@contextmanager
def atomic_writer(
    path: Path, *, mode: int = PRIVATE, fsync: bool = True, fsync_dir: bool = False
) -> Iterator[IO[bytes]]:
    """A binary file to write into; on a clean exit of the block it becomes `path`.

    `fsync=False` where losing the newest version to a power cut costs only a redo (state
    records, progress); `fsync_dir=True` where the rename itself must survive one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp: Path | None = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        place(Path(name), path, mode=mode, fsync_dir=fsync_dir)
        tmp = None
    finally:
        if tmp is not None:
            remove(tmp)


def write_atomic(
    path: Path, data: bytes | str, *, mode: int = PRIVATE, fsync: bool = True, fsync_dir: bool = False
) -> Path:
    """Replace `path` with `data` (text is written as UTF-8) in one step."""
    with atomic_writer(path, mode=mode, fsync=fsync, fsync_dir=fsync_dir) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def write_json(
    path: Path,
    obj: object,
    *,
    indent: int | None = None,
    sort_keys: bool = True,
    mode: int = PRIVATE,
    fsync: bool = True,
) -> Path:
    return write_atomic(path, json.dumps(obj, indent=indent, sort_keys=sort_keys), mode=mode, fsync=fsync)


def copy_atomic(src: Path, dest: Path, *, mode: int = PRIVATE) -> Path:
    with open(src, "rb") as f:
        return write_atomic(dest, f.read(), mode=mode)


def read_json(path: Path, *, follow_symlinks: bool = True) -> dict | None:
    """A JSON object from `path`, or None when it is missing, unreadable or not an object:
    for files whose loss only costs a redo (sidecars, state records, progress).

    `follow_symlinks=False` for a name others can write to (a partial download's sidecar): a
    symbolic link, a FIFO (which would block the open) or a device there reads as None."""
    try:
        if follow_symlinks:
            with open(path, "rb") as f:
                data = json.loads(f.read())
        else:
            with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb") as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                    return None
                data = json.loads(f.read())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def place(src: Path, dest: Path, *, mode: int, fsync_dir: bool = False) -> None:
    """Give a finished (already fsynced) file its mode and its final name in one rename.

    The mode is set through a descriptor opened without following a symbolic link: a link
    planted at `src` must not make the file it points to world-readable (OSError instead)."""
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(src))
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.replace(src, dest)
    if fsync_dir:
        fsync_directory(Path(dest).parent)


def fsync_directory(path: Path) -> None:
    # A rename is only durable once the directory entry is on disk (POSIX leaves it to the
    # directory's fsync; ext4 and xfs do not promise it otherwise).
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sidecar_path(part: Path) -> Path:
    """The JSON record beside a partial download that says what its bytes are."""
    return part.with_name(part.name + ".json")


def remove(*paths: Path) -> None:
    """Delete each path that exists; a missing one is what we wanted anyway."""
    for p in paths:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


def discard_partial(part: Path, *others: Path) -> None:
    """Forget a partial download: its bytes, its sidecar, and any other bookkeeping named."""
    remove(part, sidecar_path(part), *others)
