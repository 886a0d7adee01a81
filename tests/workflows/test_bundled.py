"""The bundled manifest and workflows: the manifest loads with model_sync's own parser,
and an unreachable hub is a clear error (exit 6), not a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

from model_sync.manifest import load_manifest
from tests.support import REPO, free_port, python_env


def test_manifest_loads_and_every_profile_is_used():
    m = load_manifest(REPO / "workflows/models.yaml")
    used = {p for f in m.files for p in f.profiles}
    assert set(m.profiles) - used == {"smoke"}, "a profile without files (only smoke needs none)"
    assert used <= set(m.profiles)
    for f in m.files:
        assert f.source.scheme in ("hf", "https"), f.dest


def test_api_workflows_have_valid_parameter_maps():
    for path in (REPO / "workflows/api").glob("*.json"):
        wf = json.loads(path.read_text())
        for name, target in wf["params"].items():
            node, _, inp = target.partition(".")
            assert inp in wf["prompt"][node]["inputs"], f"{path.name}: {name} -> {target}"
            assert not isinstance(wf["prompt"][node]["inputs"][inp], list), f"{path.name}: {name} is a link"


def test_unreachable_hub_is_a_clear_error(tmp_path):
    env = python_env(HF_ENDPOINT=f"http://127.0.0.1:{free_port()}", MODEL_SYNC_RETRIES="1")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "model_sync",
            "sync",
            "--manifest",
            str(REPO / "workflows/models.yaml"),
            "--models-dir",
            str(tmp_path),
            "--profile",
            "wan21-t2v-1.3b",
            "--dry-run",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 6, out.stderr[-2000:]
    assert "cannot reach the hub" in out.stderr and "Traceback" not in out.stderr
