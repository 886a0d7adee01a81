"""Benchmarks against named references, run from the repository root: `python -m bench.proxy`,
`python -m bench.sync`, `python -m bench.jobs`, `python -m bench.scale` (or `make bench`)."""

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def save(name: str, result: dict) -> Path:
    """Write one bench's result to bench/results/<name>.json; returns the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    return out
