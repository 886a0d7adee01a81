"""The hidden name a model file's bytes have until they are verified, and how it is opened."""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

from comfy_stack.files import remove

from .errors import TransferError

log = logging.getLogger(__name__)
PARTIAL_SUFFIX = ".msync-part"


def partial_path(final: Path) -> Path:
    """Where a file's bytes accumulate before verification.

    Hidden and with a suffix ComfyUI does not list, in the target folder so the final rename
    is atomic (same filesystem). Its name is stable, not random, so that a later process can
    resume it; the per-file lock guarantees a single writer.
    """
    return final.with_name(f".{final.name}{PARTIAL_SUFFIX}")


def clear_link(path: Path) -> None:
    """Remove a symbolic link (never what it points to) found at a name model_sync writes.

    Whoever else can write into the models folder (another pod on a shared volume, a person)
    could plant one at a partial file's stable name; writing through it would truncate and
    overwrite a file anywhere this process may write, and placing it would chmod that file.
    """
    if path.is_symlink():
        log.warning("removed a symbolic link at %s (model_sync never writes through one)", path)
        remove(path)


def open_partial(part: Path, flags: int, mode: int = 0o600) -> int:
    """`os.open` of a partial file that never follows a symbolic link at its name (one found
    there is removed, see clear_link) and never blocks on a FIFO; anything but a regular file
    there is refused."""
    for _ in range(2):
        try:
            fd = os.open(part, flags | os.O_NOFOLLOW | os.O_NONBLOCK, mode)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            clear_link(part)
            continue
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
        os.close(fd)
        break
    raise TransferError(
        f"{part}: something other than a regular file keeps appearing at this partial file's "
        "name; check what else writes into the models folder"
    )
