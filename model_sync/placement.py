"""Which destinations can be placed at all. A bucket's keys are chosen by whoever writes the
bucket, and some have no place in a filesystem: a name too long once model_sync adds the
suffixes of its partial file and records, one name that is both a file and a folder, a
folder whose name would collide with the lock or state record of a file beside it. Each
such object is refused with its reason, before anything is transferred, so that the others
are still placed (exit 12, docs/sync-semantics.md)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from comfy_stack.files import sidecar_path

from .partial import partial_path

# What an OSError while placing one file means when it is about that file's name or what is
# in its way, not about the disk or the permissions of the models folder.
NAME_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.ELOOP})
# Folder names that would collide with the lock (`<name>.lock`) or state record
# (`<name>.json`) of a file of the same name beside them, under <models-dir>/.model_sync.
BOOKKEEPING_SUFFIXES = (".lock", ".json")


def longest_derived_name(name: str) -> int:
    """Bytes of the longest name model_sync gives a file of `name` before it is placed: the
    temp file (comfy_stack.files: `.<name>.<8 random>.tmp`) of its partial file's sidecar."""
    sidecar = sidecar_path(partial_path(Path(name))).name
    return len(os.fsencode(f".{sidecar}.xxxxxxxx.tmp"))


def name_max(models_dir: Path) -> int:
    """The longest file name the models directory's filesystem takes (NAME_MAX)."""
    here = models_dir
    while not here.exists() and here != here.parent:
        here = here.parent
    try:
        return os.pathconf(here, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def unplaceable(dests: list[str], models_dir: Path) -> dict[str, str]:
    """dest -> why it cannot be placed (what to do included), for the dests that cannot."""
    limit = name_max(models_dir)
    out: dict[str, str] = {}
    for dest in dests:
        reason = _name_problem(dest, limit) or _in_the_way(models_dir, dest)
        if reason:
            out[dest] = reason
    # One name both a file and a folder in the bucket: the file keeps it, unless it is
    # refused itself (a folder of that name is already here).
    wanted = set(dests)
    for dest in dests:
        parts = dest.split("/")
        for i in range(2, len(parts)):
            above = "/".join(parts[:i])
            if above in wanted and above not in out and dest not in out:
                out[dest] = (
                    f"{above} is a file in the source, so it cannot also be a folder; "
                    "rename one of the two objects"
                )
    return out


def _name_problem(dest: str, limit: int) -> str:
    *folders, name = dest.split("/")
    for part in folders:
        if len(os.fsencode(part)) > limit:
            return f"the folder name {part[:40]}... is longer than this filesystem allows ({limit} bytes)"
        if part.endswith(BOOKKEEPING_SUFFIXES):
            return (
                f"the folder name {part} ends in {os.path.splitext(part)[1]}, which would collide "
                "with model_sync's lock or state record of a file of that name; rename the folder"
            )
    longest = longest_derived_name(name)
    if longest > limit:
        room = limit - (longest - len(os.fsencode(name)))
        return (
            f"its name is {len(os.fsencode(name))} bytes; with the suffixes of its partial file "
            f"this filesystem ({limit} bytes a name) takes names of at most {room} bytes; "
            "rename the object"
        )
    return ""


def _in_the_way(models_dir: Path, dest: str) -> str:
    """What in the models folder already stands where the file must go."""
    parts = dest.split("/")
    here = models_dir
    for part in parts[:-1]:
        here = here / part
        if os.path.lexists(here) and not here.is_dir():
            return f"{here.relative_to(models_dir)} is a file here, not a folder; move it away or rename the object"
    if (models_dir / dest).is_dir():
        return "a folder of that name is here; move it away or rename the object"
    return ""
