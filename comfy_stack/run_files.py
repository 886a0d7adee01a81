"""What `comfyctl serve` keeps in its run folder (`<data>/run`, COMFY_RUN_DIR for the proxy):
the names every program that reads or writes it shares, declared once."""

from __future__ import annotations

from pathlib import Path

SYNC_PLAN = (
    "sync.json"  # how to sync models again (comfyctl.sync_job.Plan), for `comfyctl sync` and /_models/sync
)
NUMBA_CACHE = "numba-cache"  # numba's cache, seeded from the image (comfyctl.numba_cache)


def run_dir(data_dir: Path) -> Path:
    return data_dir / "run"
