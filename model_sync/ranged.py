"""Parallel ranged download into a partial file, resumable across processes.

Why not boto3's transfer manager alone: its ranged downloads write to a random temp name
and keep no record of finished ranges, so a killed process (pod eviction, kill -9) starts
the whole multi-GB object over. Here each fixed-size part is fetched with one ranged GET,
written in place with pwrite, fsynced, and only then recorded in a small sidecar JSON next
to the partial file. A later process that finds the sidecar with the same source identity
and part size fetches only the parts not recorded, so a crash costs at most the parts that
were in flight (one per parallel stream).
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from comfy_stack.files import discard_partial, read_json, sidecar_path, write_json

from .errors import TransientError

log = logging.getLogger(__name__)

FetchRange = Callable[[int, int], Iterable[bytes]]   # (start, end_exclusive) -> chunks


@dataclass(frozen=True)
class RangedJob:
    part: Path            # the partial file
    size: int
    identity: str         # the source's identity: a changed source invalidates finished parts
    part_size: int
    threads: int


def download_ranged(job: RangedJob, fetch: FetchRange, on_bytes: Callable[[int], None],
                    on_resume: Callable[[int], None] | None = None, digests=None) -> None:
    """`digests` (verify.Digests) is fed the file in order while parts are still arriving."""
    side = sidecar_path(job.part)
    state = read_json(side)
    done: set[int] = set()
    if (state and state.get("identity") == job.identity and state.get("size") == job.size
            and state.get("part_size") == job.part_size and job.part.exists()):
        done = {int(i) for i in state.get("done", [])}
    else:
        discard_partial(job.part)
    n_parts = max(1, -(-job.size // job.part_size))
    todo = [i for i in range(n_parts) if i not in done]
    if done:
        kept = sum(min(job.part_size, job.size - i * job.part_size) for i in done)
        log.info("resuming %s: %d of %d parts (%d bytes) already there",
                 job.part.name, len(done), n_parts, kept)
        if on_resume:
            on_resume(kept)
    fd = os.open(job.part, os.O_RDWR | os.O_CREAT, 0o644)
    record_lock = threading.Lock()
    hash_lock = threading.Lock()
    hashed = [0]   # parts [0, hashed) have been fed to `digests`

    def feed_prefix(block: bool = False) -> None:
        # Read back (from the page cache) the parts that now form a contiguous prefix. One
        # thread hashes at a time; the others go back to downloading instead of waiting, and
        # the final blocking call after the last part catches anything they left.
        if digests is None or not digests.needed or not hash_lock.acquire(blocking=block):
            return
        try:
            while True:
                with record_lock:
                    if hashed[0] not in done:
                        return
                i = hashed[0]
                pos, end = i * job.part_size, min(job.size, (i + 1) * job.part_size)
                while pos < end:
                    chunk = os.pread(fd, min(4 * 1024 * 1024, end - pos), pos)
                    if not chunk:
                        raise TransientError(f"{job.part.name}: short read at {pos}")
                    digests.update(chunk)
                    pos += len(chunk)
                hashed[0] += 1
        finally:
            hash_lock.release()

    try:
        os.ftruncate(fd, job.size)
        feed_prefix()

        def one(i: int) -> None:
            start = i * job.part_size
            end = min(job.size, start + job.part_size)
            pos = start
            for chunk in fetch(start, end):
                if pos + len(chunk) > end:
                    raise TransientError(f"server sent more than the requested range {start}-{end}")
                os.pwrite(fd, chunk, pos)
                pos += len(chunk)
                on_bytes(len(chunk))
            if pos != end:
                raise TransientError(f"truncated body: got {pos - start} of {end - start} bytes "
                                     f"for range {start}-{end - 1}")
            os.fdatasync(fd)   # the record below must never claim bytes that are not on disk
            with record_lock:
                done.add(i)
                write_json(side, {"identity": job.identity, "size": job.size,
                                  "part_size": job.part_size, "done": sorted(done)}, fsync=False)
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
    finally:
        os.close(fd)
