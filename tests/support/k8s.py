"""The manifests as kustomize renders them (`kubectl kustomize`), for the tests in tests/k8s."""

from __future__ import annotations

import subprocess

from tests.support import REPO, need_tool


def render(overlay: str) -> str:
    """The rendered YAML of deploy/k8s/overlays/<overlay>."""
    out = subprocess.run(
        [need_tool("kubectl"), "kustomize", str(REPO / "deploy/k8s/overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout
