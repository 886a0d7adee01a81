"""The progress file: written by the sync, read back through the same module by the proxy."""

from __future__ import annotations

import io

from model_sync import progress
from model_sync.progress import FileProgress, Progress, Snapshot


def test_what_the_sync_writes_is_what_the_proxy_reads(tmp_path):
    path = progress.path_for(tmp_path / "models")
    p = Progress(path, 10, tty=False, stream=io.StringIO())
    p.begin(2, 300)
    p.start_file("vae/a.pt", 100)
    p.advance("vae/a.pt", 40)
    p.error("loras/b.safetensors: HTTP 503")
    read = progress.read(path)
    assert read == Snapshot(
        "running", 40, 300, 0, 2, (FileProgress("vae/a.pt", 40, 100),), ("loras/b.safetensors: HTTP 503",)
    )
    assert read.summary() == {
        "state": "running",
        "bytes_done": 40,
        "bytes_total": 300,
        "files_done": 0,
        "files_total": 2,
    }


def test_a_missing_or_foreign_file_reads_as_no_progress(tmp_path):
    assert progress.read(tmp_path / "none.json") is None
    (tmp_path / "bad.json").write_text('{"state": "running"}')
    assert progress.read(tmp_path / "bad.json") is None
    (tmp_path / "list.json").write_text("[1, 2]")
    assert progress.read(tmp_path / "list.json") is None
