"""The hidden name a model file's bytes have until they are verified."""

from __future__ import annotations

from pathlib import Path

PARTIAL_SUFFIX = ".msync-part"


def partial_path(final: Path) -> Path:
    """Where a file's bytes accumulate before verification.

    Hidden and with a suffix ComfyUI does not list, in the target folder so the final rename
    is atomic (same filesystem). Its name is stable, not random, so that a later process can
    resume it; the per-file lock guarantees a single writer.
    """
    return final.with_name(f".{final.name}{PARTIAL_SUFFIX}")
