"""The ranged download's own bookkeeping, driven by an in-memory source: digests computed while
parts arrive in any order (combined per-part CRC32s, in-order MD5 and sha256), resumed parts,
and files of one part."""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
import zlib

import pytest

from comfy_stack.files import sidecar_path, write_json
from model_sync.ranged import RangedJob, download_ranged
from model_sync.verify import Digests, Expect, crc32_combine

PART = 64 * 1024


def test_crc32_combine_matches_zlib_over_the_concatenation():
    rng = random.Random(7)
    for _ in range(200):
        a = rng.randbytes(rng.randint(0, 3000))
        b = rng.randbytes(rng.choice([0, 1, 3, 255, 4096, 70_000]))
        assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


def source(data: bytes, requests: list[tuple[int, int]]):
    """A fetch that serves ranges in small chunks, the later parts a little sooner, so that
    parts finish out of order."""
    lock = threading.Lock()

    def fetch(start: int, end: int):
        with lock:
            requests.append((start, end))
        for pos in range(start, end, 10_000):
            time.sleep(0.0005 * (len(data) - start) / len(data))
            yield data[pos : min(end, pos + 10_000)]

    return fetch


@pytest.mark.parametrize("kind", ["crc32", "md5+sha256"])
def test_digests_over_parts_arriving_out_of_order(kind, tmp_path):
    data = os.urandom(10 * PART + 123)
    if kind == "crc32":
        expect = Expect(len(data), crc32=zlib.crc32(data))
    else:
        expect = Expect(len(data), md5=hashlib.md5(data).hexdigest(), sha256=hashlib.sha256(data).hexdigest())
    digests = Digests(expect)
    part = tmp_path / ".m.bin.msync-part"
    requests: list[tuple[int, int]] = []
    download_ranged(
        RangedJob(part, len(data), "etag:x", PART, 4), source(data, requests), lambda n: None, None, digests
    )
    assert part.read_bytes() == data
    assert digests.fed == len(data)
    if kind == "crc32":
        assert digests.crc32 == expect.crc32
    else:
        assert digests.md5 is not None and digests.md5.hexdigest() == expect.md5
        assert digests.sha is not None and digests.sha.hexdigest() == expect.sha256
    assert len(requests) == 11


def test_resumed_parts_are_not_fetched_but_still_hashed(tmp_path):
    data = os.urandom(4 * PART)
    part = tmp_path / ".m.bin.msync-part"
    with open(part, "wb") as f:  # parts 0 and 2 finished by an earlier process
        f.write(data[:PART] + b"\0" * PART + data[2 * PART : 3 * PART] + b"\0" * PART)
    write_json(
        sidecar_path(part), {"identity": "etag:x", "size": len(data), "part_size": PART, "done": [0, 2]}
    )
    digests = Digests(Expect(len(data), crc32=zlib.crc32(data)))
    requests: list[tuple[int, int]] = []
    resumed: list[int] = []
    download_ranged(
        RangedJob(part, len(data), "etag:x", PART, 4),
        source(data, requests),
        lambda n: None,
        resumed.append,
        digests,
    )
    assert sorted(requests) == [(PART, 2 * PART), (3 * PART, 4 * PART)] and resumed == [2 * PART]
    assert part.read_bytes() == data and digests.crc32 == zlib.crc32(data)


def test_a_file_of_one_part_keeps_no_sidecar_and_is_never_read_back(tmp_path, monkeypatch):
    data = os.urandom(PART - 1)
    part = tmp_path / ".s.bin.msync-part"
    part.write_bytes(b"stale bytes of an earlier attempt, longer than nothing")
    reads: list[int] = []
    real_pread = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, off: reads.append(n) or real_pread(fd, n, off))
    digests = Digests(Expect(len(data), md5=hashlib.md5(data).hexdigest()))
    download_ranged(
        RangedJob(part, len(data), "etag:x", PART, 4), source(data, []), lambda n: None, None, digests
    )
    assert part.read_bytes() == data and not sidecar_path(part).exists()
    assert digests.md5 is not None and digests.md5.hexdigest() == hashlib.md5(data).hexdigest()
    assert reads == []
