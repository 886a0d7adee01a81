"""Fixtures shared by the runtime suites."""

from __future__ import annotations

import pytest


@pytest.fixture
def checkout(tmp_path):
    """The least that passes for a ComfyUI checkout in configuration checks: a main.py."""
    d = tmp_path / "ComfyUI"
    d.mkdir()
    (d / "main.py").write_text("")
    return d
