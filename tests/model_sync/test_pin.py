"""`model_sync pin` against a local server speaking the hub's resolve protocol: sizes,
sha256 and commits land in the manifest, comments survive, conflicts are refused."""

from __future__ import annotations

import hashlib

import yaml

from tests.support.sync_cli import cli_env, run_cli, safetensors_bytes

COMMIT = "1234567890abcdef" * 2 + "12345678"

MANIFEST = """\
# comment at the top: kept
version: 1
profiles:
  p: "first"   # trailing comment: kept
  q: "second"
files:
  # --- a section comment: kept ---
  - folder: vae
    path: a.safetensors
    source: hf://o/r/split/a.safetensors
    profiles: [p]
  - folder: loras
    path: sub/b.pt
    source: hf://o/r/b.pt@main
    profiles: [q]
"""


def test_pin_writes_sizes_hashes_and_commits_keeping_comments(hub, tmp_path):
    a, b = safetensors_bytes(5_000, 3), b"b" * 777
    hub.add("o/r", {"split/a.safetensors": a, "b.pt": b}, commit=COMMIT)
    manifest = tmp_path / "models.yaml"
    manifest.write_text(MANIFEST)
    manifest.chmod(0o644)
    env = cli_env(HF_ENDPOINT=hub.url)

    dry = run_cli(["pin", "--manifest", str(manifest), "--dry-run"], env)
    assert dry.rc == 0, dry.stderr[-2000:]
    assert manifest.read_text() == MANIFEST
    assert f"vae/a.safetensors: size (none) -> {len(a)}" in dry.stdout

    only_q = run_cli(["pin", "--manifest", str(manifest), "--profile", "q"], env)
    assert only_q.rc == 0, only_q.stderr[-2000:]
    files = yaml.safe_load(manifest.read_text())["files"]
    assert "size" not in files[0] and files[1]["size"] == len(b)

    res = run_cli(["pin", "--manifest", str(manifest)], env)
    assert res.rc == 0, res.stderr[-2000:]
    text = manifest.read_text()
    for kept in (
        "# comment at the top: kept",
        "# trailing comment: kept",
        "# --- a section comment: kept ---",
    ):
        assert kept in text
    files = yaml.safe_load(text)["files"]
    assert files[0] == {
        "folder": "vae",
        "path": "a.safetensors",
        "source": f"hf://o/r/split/a.safetensors@{COMMIT}",
        "size": len(a),
        "sha256": hashlib.sha256(a).hexdigest(),
        "profiles": ["p"],
    }
    assert (
        files[1]["source"] == f"hf://o/r/b.pt@{COMMIT}"
        and files[1]["sha256"] == hashlib.sha256(b).hexdigest()
    )
    assert list(files[1]) == ["folder", "path", "source", "size", "sha256", "profiles"]

    assert manifest.stat().st_mode & 0o777 == 0o644  # a file in a repository keeps its mode
    again = run_cli(["pin", "--manifest", str(manifest)], env)
    assert again.rc == 0 and again.stdout == "" and manifest.read_text() == text

    # the pinned manifest syncs, fetching at the commit
    sync = run_cli(["sync", "--manifest", str(manifest), "--models-dir", str(tmp_path / "m")], env)
    assert sync.rc == 0, sync.stderr[-2000:]
    assert (tmp_path / "m/loras/sub/b.pt").read_bytes() == b
    assert ("GET", f"/o/r/resolve/{COMMIT}/b.pt", None) in hub.requests


def test_pin_refuses_a_conflict_unless_told_to_update(hub, tmp_path):
    hub.add("o/r", {"split/a.safetensors": b"new content" * 50, "b.pt": b"b"}, commit=COMMIT)
    manifest = tmp_path / "models.yaml"
    manifest.write_text(MANIFEST.replace("    profiles: [p]\n", "    size: 3\n    profiles: [p]\n", 1))
    before = manifest.read_text()
    env = cli_env(HF_ENDPOINT=hub.url)
    res = run_cli(["pin", "--manifest", str(manifest)], env)
    assert res.rc == 8 and "vae/a.safetensors: size 3 -> 550" in res.stderr and "--update" in res.stderr
    assert manifest.read_text() == before
    res = run_cli(["pin", "--manifest", str(manifest), "--update"], env)
    assert res.rc == 0, res.stderr[-2000:]
    assert yaml.safe_load(manifest.read_text())["files"][0]["size"] == 550


def test_pin_reports_an_unknown_file_and_changes_nothing(hub, tmp_path):
    hub.add("o/r", {"split/a.safetensors": b"a"}, commit=COMMIT)
    manifest = tmp_path / "models.yaml"
    manifest.write_text(MANIFEST)
    res = run_cli(["pin", "--manifest", str(manifest)], cli_env(HF_ENDPOINT=hub.url, MODEL_SYNC_RETRIES="1"))
    assert res.rc == 5 and "hf://o/r/b.pt@main" in res.stderr
    assert manifest.read_text() == MANIFEST
