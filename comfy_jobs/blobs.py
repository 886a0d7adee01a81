"""Asset bytes on the data volume, content-addressed by blake3 (the hash the v2 contract
names): `<COMFY_JOBS_DIR>/blobs/ab/abcdef...`. Written atomically (temp file in the same
folder, fsync, link to the final name so a concurrent writer of the same bytes cannot
clobber it), so a name only ever holds complete, verified bytes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from blake3 import blake3

from comfy_jobs.errors import AssetTooLarge
from comfy_stack.files import fsync_directory

log = logging.getLogger(__name__)
PREFIX = "blake3:"
WRITE_BATCH = 1 << 20  # bytes buffered before a write to the temp file


class BlobStore:
    def __init__(self, root: Path, mirror=None):
        self.root = root
        self.mirror = mirror  # objstore.Mirror when COMFY_OUTPUTS_TO is set

    def path(self, digest: str) -> Path:
        hexd = digest.removeprefix(PREFIX)
        if len(hexd) != 64 or any(c not in "0123456789abcdef" for c in hexd):
            raise ValueError(f"not a blake3 digest: {digest!r}")
        return self.root / hexd[:2] / hexd

    def exists(self, digest: str) -> bool:
        try:
            return self.path(digest).is_file()
        except ValueError:
            return False

    async def ingest(
        self, chunks: AsyncIterator[bytes], max_bytes: int | None = None
    ) -> tuple[str, int, bool]:
        """Store a stream; returns (digest, size, created_new). A stream that ends within
        one write batch (most files a run saves) is stored in one trip to a thread, and not
        written at all when the store holds its bytes already."""
        head: list[bytes] = []
        size = 0
        stream = aiter(chunks)
        async for chunk in stream:
            size += len(chunk)
            if max_bytes is not None and size > max_bytes:
                raise AssetTooLarge(max_bytes)
            head.append(chunk)
            if size >= WRITE_BATCH:
                async with self.staged(_chain(head, stream), max_bytes) as staged:
                    return staged.digest, staged.size, await staged.keep()
        data = b"".join(head)
        digest = PREFIX + blake3(data).hexdigest()
        created = await asyncio.get_running_loop().run_in_executor(None, self._store_small, data, digest)
        return digest, size, created

    def _store_small(self, data: bytes, digest: str) -> bool:
        final = self.path(digest)
        if final.is_file():
            return False
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix=".in-")
        try:
            with os.fdopen(fd, "wb") as f:
                _write_flush_and_sync(f, [data])
            return _link(Path(tmp), final)
        finally:
            os.unlink(tmp)

    @contextlib.asynccontextmanager
    async def staged(self, chunks: AsyncIterator[bytes], max_bytes: int | None = None):
        """The stream in a temp file, hashed, not yet under its name: the caller checks it
        (an expected hash) and `keep()`s it; whatever is not kept is gone on leaving."""
        loop = asyncio.get_running_loop()
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix=".in-")
        h, size = blake3(), 0
        try:
            with os.fdopen(fd, "wb") as f:
                # Written in batches of WRITE_BATCH: a thread hop per network chunk cost more
                # than the disk for the small files most runs save; the last batch goes with
                # the fsync, so a file under WRITE_BATCH costs one hop.
                pending: list[bytes] = []
                held = 0
                async for chunk in chunks:
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise AssetTooLarge(max_bytes)
                    h.update(chunk)
                    pending.append(chunk)
                    held += len(chunk)
                    if held >= WRITE_BATCH:
                        await loop.run_in_executor(None, f.writelines, pending)
                        pending, held = [], 0
                await loop.run_in_executor(None, _write_flush_and_sync, f, pending)
            yield Staged(self, Path(tmp), PREFIX + h.hexdigest(), size)
        finally:
            os.unlink(tmp)

    async def ensure_local(self, digest: str, remote_uri: str | None) -> Path | None:
        """The blob's local path, fetched back (and verified) from object storage when the
        local copy is gone; None when it is nowhere."""
        path = self.path(digest)
        if path.is_file():
            return path
        if not (remote_uri and self.mirror):
            return None
        log.info("fetching %s back from %s", digest, remote_uri)
        await asyncio.get_running_loop().run_in_executor(None, self.mirror.fetch, remote_uri, digest, path)
        return path if path.is_file() else None


@dataclass
class Staged:
    """Hashed bytes in a temp file of the store, waiting to be named."""

    store: BlobStore
    tmp: Path
    digest: str
    size: int

    async def keep(self) -> bool:
        """Name the bytes by their hash; False when the store had them already. A hard
        link, so a concurrent writer of the same bytes cannot clobber a complete file."""
        return await asyncio.get_running_loop().run_in_executor(
            None, _link, self.tmp, self.store.path(self.digest)
        )


def _link(tmp: Path, final: Path) -> bool:
    """Give complete, synced bytes their final name; False when it held them already."""
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(tmp, final)
    except FileExistsError:
        return False
    fsync_directory(final.parent)
    return True


async def _chain(head: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in head:
        yield chunk
    async for chunk in rest:
        yield chunk


def _write_flush_and_sync(f, pending: list[bytes]) -> None:
    f.writelines(pending)
    f.flush()
    os.fsync(f.fileno())


def digest_file(path: Path) -> str:
    h = blake3(max_threads=blake3.AUTO)
    h.update_mmap(path)
    return PREFIX + h.hexdigest()
