"""Parallel ranged download into a partial file, resumable across processes.

Why not boto3's transfer manager alone: its ranged downloads write to a random temp name
and keep no record of finished ranges, so a killed process (pod eviction, kill -9) starts
the whole multi-GB object over. Here each fixed-size part is fetched with one ranged GET,
written in place with pwrite, fsynced, and only then recorded in a small sidecar JSON next
to the partial file. A later process that finds the sidecar with the same source identity
and part size fetches only the parts not recorded, so a crash costs at most the parts that
were in flight (one per parallel stream). A file of a single part keeps no sidecar: a
crash would lose that part whatever was recorded.

Digests are computed while parts arrive. A lone CRC32 (what S3 stores keep) is computed by
each stream over its own part, from memory, and the parts' CRCs are combined. MD5 and sha256
need the file in order: a chunk written where hashing stands is hashed from memory, and what
other streams wrote ahead of that point is read back from the page cache once the gap closes.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from comfy_stack.files import discard_partial, read_json, sidecar_path, write_json

from .errors import TransientError
from .partial import open_partial

log = logging.getLogger(__name__)

FetchRange = Callable[[int, int], Iterable[bytes]]  # (start, end_exclusive) -> chunks
# Every WRITE_BEHIND bytes a stream asks the kernel to start writing what it wrote to disk,
# without waiting. Otherwise writeback starts only at the part's fdatasync, when the last
# bytes arrive, and the disk sits idle while the network works and the network while the
# disk does.
WRITE_BEHIND = 8 * 1024 * 1024


def _write_behind_call() -> Callable[[int, int, int], None] | None:
    """sync_file_range(SYNC_FILE_RANGE_WRITE) where libc has it, as PostgreSQL's
    pg_flush_data does (Python's os module lacks it; ctypes reaches glibc's wrapper); else
    POSIX_FADV_DONTNEED, which on Linux also starts writeback of a range's dirty pages."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        sync_file_range = libc.sync_file_range
    except (OSError, AttributeError):
        return lambda fd, off, n: os.posix_fadvise(fd, off, n, os.POSIX_FADV_DONTNEED)
    sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]

    def start_writeback(fd: int, off: int, n: int) -> None:
        sync_file_range(fd, off, n, 2)  # SYNC_FILE_RANGE_WRITE; a failure only costs the overlap

    return start_writeback


_WRITE_BEHIND = _write_behind_call()


@dataclass(frozen=True)
class RangedJob:
    part: Path  # the partial file
    size: int
    identity: str  # the source's identity: a changed source invalidates finished parts
    part_size: int
    threads: int


def download_ranged(
    job: RangedJob,
    fetch: FetchRange,
    on_bytes: Callable[[int], None],
    on_resume: Callable[[int], None] | None = None,
    digests=None,
) -> None:
    """`digests` (verify.Digests) is fed the file in order while parts are still arriving."""
    n_parts = max(1, -(-job.size // job.part_size))
    side = sidecar_path(job.part)
    done: set[int] = set()
    if n_parts > 1:
        state = read_json(side, follow_symlinks=False)
        if (
            state
            and state.get("identity") == job.identity
            and state.get("size") == job.size
            and state.get("part_size") == job.part_size
            and job.part.exists()
        ):
            done = {int(i) for i in state.get("done", [])}
        else:
            discard_partial(job.part)
    todo = [i for i in range(n_parts) if i not in done]
    if done:
        kept = sum(min(job.part_size, job.size - i * job.part_size) for i in done)
        log.info(
            "resuming %s: %d of %d parts (%d bytes) already there", job.part.name, len(done), n_parts, kept
        )
        if on_resume:
            on_resume(kept)
    # A file of one part has nothing to resume (a crash loses the part in flight, which is
    # all of it), so it keeps no sidecar and is synced once, before it is placed.
    fd = open_partial(job.part, os.O_RDWR | os.O_CREAT | (os.O_TRUNC if n_parts == 1 else 0))
    record_lock = threading.Lock()
    hash_lock = threading.Lock()
    # Bytes written so far of each part (from its start), and the offset up to which the
    # file has been fed to `digests`.
    written = [min(job.part_size, job.size - i * job.part_size) if i in done else 0 for i in range(n_parts)]
    hashed = [0]
    # A lone CRC32 (what S3 stores keep) is computed per part, in each stream, and the parts'
    # CRCs combined: nothing is read back. MD5 and sha256 need the bytes in file order.
    per_part = digests is not None and digests.crc32_only
    hashing = digests is not None and digests.needed and not per_part
    part_crc: dict[int, int] = {}
    # Write-behind only where nothing is read back: the fallback may drop clean pages.
    behind = None if hashing else _WRITE_BEHIND

    def hash_in_stream(pos: int, chunk: bytes) -> None:
        # The chunk just written starts where hashing stands: feed it from memory instead of
        # reading it back later (a one-part file is never read back at all). A thread that
        # finds the lock taken leaves the bytes to the read-back below.
        if not hash_lock.acquire(blocking=False):
            return
        try:
            if hashed[0] == pos:
                digests.update(chunk)
                hashed[0] += len(chunk)
        finally:
            hash_lock.release()

    def feed_prefix(block: bool = False) -> None:
        # Read back (from the page cache) what was written beyond the hashing offset, as far
        # as the bytes are contiguous. One thread hashes at a time; the others go back to
        # downloading instead of waiting, and the final blocking call catches what is left.
        if not hashing or not hash_lock.acquire(blocking=block):
            return
        try:
            while hashed[0] < job.size:
                i = hashed[0] // job.part_size
                end = i * job.part_size + written[i]
                if hashed[0] >= end:
                    return
                while hashed[0] < end:
                    chunk = os.pread(fd, min(4 * 1024 * 1024, end - hashed[0]), hashed[0])
                    if not chunk:
                        raise TransientError(f"{job.part.name}: short read at {hashed[0]}")
                    digests.update(chunk)
                    hashed[0] += len(chunk)
        finally:
            hash_lock.release()

    try:
        if n_parts > 1:
            os.ftruncate(fd, job.size)
        if per_part:
            for i in done:
                part_crc[i] = _crc32_of(fd, i * job.part_size, min(job.size, (i + 1) * job.part_size))
        feed_prefix()

        def one(i: int) -> None:
            start = i * job.part_size
            end = min(job.size, start + job.part_size)
            pos = flushed = start
            crc = 0
            for chunk in fetch(start, end):
                if pos + len(chunk) > end:
                    raise TransientError(f"server sent more than the requested range {start}-{end}")
                os.pwrite(fd, chunk, pos)
                if per_part:
                    crc = zlib.crc32(chunk, crc)
                elif hashing:
                    hash_in_stream(pos, chunk)
                pos += len(chunk)
                written[i] = pos - start
                on_bytes(len(chunk))
                if behind and pos - flushed >= WRITE_BEHIND:
                    behind(fd, flushed, pos - flushed)
                    flushed = pos
            if pos != end:
                raise TransientError(
                    f"truncated body: got {pos - start} of {end - start} bytes for range {start}-{end - 1}"
                )
            part_crc[i] = crc
            if n_parts > 1:
                os.fdatasync(fd)  # the record below must never claim bytes that are not on disk
                with record_lock:
                    done.add(i)
                    write_json(
                        side,
                        {
                            "identity": job.identity,
                            "size": job.size,
                            "part_size": job.part_size,
                            "done": sorted(done),
                        },
                        fsync=False,
                    )
            feed_prefix()

        if len(todo) <= 1 or job.threads <= 1:
            for i in todo:
                one(i)
        else:
            with ThreadPoolExecutor(min(job.threads, len(todo)), thread_name_prefix="range") as pool:
                futures = [pool.submit(one, i) for i in todo]
                finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
                failed = [f for f in finished if f.exception() is not None]
                if failed:
                    for f in futures:
                        f.cancel()
                    raise failed[0].exception()  # type: ignore[misc]
        os.fsync(fd)
        feed_prefix(block=True)
        if per_part:
            digests.update_crc32_parts(
                [(part_crc[i], min(job.part_size, job.size - i * job.part_size)) for i in range(n_parts)]
            )
    finally:
        os.close(fd)


def _crc32_of(fd: int, start: int, end: int) -> int:
    crc = 0
    while start < end:
        chunk = os.pread(fd, min(4 * 1024 * 1024, end - start), start)
        if not chunk:
            raise TransientError(f"short read at {start}")
        crc = zlib.crc32(chunk, crc)
        start += len(chunk)
    return crc
