"""comfy_stack.files: the one atomic write and the one partial-download clean-up."""

from __future__ import annotations

import stat
import threading

import pytest

from comfy_stack.files import (
    atomic_writer,
    copy_atomic,
    discard_partial,
    read_json,
    sidecar_path,
    write_atomic,
    write_json,
)


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_write_replaces_in_one_step_with_the_mode_asked(tmp_path):
    target = tmp_path / "sub" / "a.json"
    write_atomic(target, "one")
    assert target.read_text() == "one" and stat.S_IMODE(target.stat().st_mode) == 0o600
    write_atomic(target, b"two", mode=0o644, fsync_dir=True)
    assert target.read_bytes() == b"two" and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert leftovers(target.parent) == []


def test_a_failed_write_keeps_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "state.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_writer(target) as f:
            f.write(b'{"v": 2')
            raise RuntimeError("killed halfway")
    assert read_json(target) == {"v": 1}
    assert leftovers(tmp_path) == []


def test_concurrent_writers_never_share_a_temp_file(tmp_path):
    target = tmp_path / "shared.txt"
    bodies = [str(i).encode() * 100_000 for i in range(8)]
    threads = [threading.Thread(target=write_atomic, args=(target, b)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_bytes() in bodies
    assert leftovers(tmp_path) == []


def test_copy_and_tolerant_read(tmp_path):
    src = tmp_path / "src.json"
    src.write_text('["not", "an", "object"]')
    dest = copy_atomic(src, tmp_path / "out" / "dest.json", mode=0o644)
    assert dest.read_text() == src.read_text() and stat.S_IMODE(dest.stat().st_mode) == 0o644
    assert read_json(dest) is None and read_json(tmp_path / "missing.json") is None


def test_discard_partial_removes_bytes_sidecar_and_bookkeeping(tmp_path):
    part = tmp_path / ".m.safetensors.msync-part"
    extra = tmp_path / "checkpoint"
    for p in (part, sidecar_path(part), extra):
        p.write_text("x")
    discard_partial(part, extra)
    assert list(tmp_path.iterdir()) == []
    discard_partial(part, extra)  # nothing there any more: not an error
