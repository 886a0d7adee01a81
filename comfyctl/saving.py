"""Where `comfyctl run` puts what a server sends, and how much of it: every output path
under --out (`contained`), every download bounded in bytes (`Budget`, `save`).

The paths come from the server (ComfyUI's history, the v2 API's outputs): node ids,
subfolders and file names are its words, so a hostile or broken server must not be able
to name a place outside --out, nor fill the disk with an endless body.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

from comfy_stack.files import SHARED, atomic_writer
from comfyctl.errors import BadAnswer, ConfigError

ADVICE = "nothing was downloaded (is --server the server you meant?)"
# A Windows drive ("C:") or a control character (NUL ends a C string; a newline would
# split the printed list of paths) has no place in a name ComfyUI gives a file.
DRIVE = re.compile(r"^[A-Za-z]:")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def contained(out_dir: Path, *parts: str) -> Path:
    """`out_dir` joined with `parts` (each a relative path, `/` or `\\` separated: ComfyUI
    on Windows reports subfolders with backslashes), or BadAnswer if that would name
    anything but a file inside `out_dir`: an absolute path, a drive, `..`, a control
    character, an empty file name, or a symlink already in `out_dir` pointing out."""
    shown = "/".join(repr(p) for p in parts)
    names: list[str] = []
    for part in parts:
        if not isinstance(part, str) or CONTROL.search(part):
            raise BadAnswer(f"the server named an output {shown} with a control character; {ADVICE}")
        if part.startswith(("/", "\\")) or DRIVE.match(part):
            raise BadAnswer(f"the server named an output {shown} by an absolute path; {ADVICE}")
        for name in re.split(r"[/\\]", part):
            if name == "..":
                raise BadAnswer(f"the server named an output {shown} outside --out ('..'); {ADVICE}")
            if name not in ("", "."):
                names.append(name)
    if not parts or re.split(r"[/\\]", parts[-1])[-1] in ("", "."):
        raise BadAnswer(f"the server named an output {shown} without a file name; {ADVICE}")
    target = out_dir.joinpath(*names)
    root = out_dir.resolve()
    if root not in target.resolve().parents:
        raise BadAnswer(f"the output {shown} would land outside --out {out_dir} (a link there?); {ADVICE}")
    return target


class Budget:
    """The bytes a run may still write (--max-output-bytes), across all its outputs."""

    def __init__(self, limit: int):
        self.limit, self.left = limit, limit

    def take(self, n: int, what: str) -> None:
        self.left -= n
        if self.left < 0:
            raise BadAnswer(
                f"{what}: the outputs exceed --max-output-bytes {self.limit}; "
                "raise it if the server is yours and the files are expected"
            )


async def save(chunks: AsyncIterator[bytes], target: Path, budget: Budget, what: str) -> Path:
    """Write a download to `target` atomically (a partial file never gets its name), within
    the budget."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_writer(target, mode=SHARED) as f:
            async for chunk in chunks:
                budget.take(len(chunk), what)
                f.write(chunk)
    except OSError as exc:
        raise ConfigError(f"cannot write {target}: {exc.strerror}; check --out") from None
    return target
