"""Calling `comfyctl run` in-process the way its command line does."""

from __future__ import annotations

import argparse
from pathlib import Path

from comfyctl import run as runmod
from tests.support.comfyui import SMOKE_WORKFLOW


def run_args(
    tmp_path: Path, server: str, workflow: Path = SMOKE_WORKFLOW, flags: tuple[str, ...] = (), **overrides
) -> argparse.Namespace:
    """`comfyctl run WORKFLOW --server SERVER --out TMP/out --json FLAGS...`, parsed by its own
    parser, then any attribute overridden (token=..., param=[...], ...)."""
    p = argparse.ArgumentParser()
    runmod.add_arguments(p)
    ns = p.parse_args([str(workflow), "--server", server, "--out", str(tmp_path / "out"), "--json", *flags])
    for k, v in overrides.items():
        setattr(ns, k, v)
    return ns
