"""Outputs mirrored to object storage (COMFY_OUTPUTS_TO=oss://bucket/prefix or s3://...),
through model_sync's backends: the same credentials, endpoints and clients as the model
sync (OSS_* and AWS_* variables, read into JobSettings.storage), and its verified download to fetch a blob back.

Each blob is stored once under <prefix>/<first two hex digits>/<blake3 hex>, uploaded,
then checked (the stored size, and the MD5 S3 reports for a single-part upload), and only
then recorded; a blob fetched back is verified against its blake3 before it is served.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from pathlib import Path
from typing import Any

from comfy_jobs.blobs import digest_file
from model_sync.backends import make_backend
from model_sync.settings import Settings as SyncSettings
from model_sync.settings import Storage
from model_sync.uris import SourceURI, parse_uri


class MirrorError(Exception):
    pass


class Mirror:
    def __init__(self, prefix: str, work_dir: Path, storage: Storage):
        self.prefix = prefix
        self.base = parse_uri(prefix, prefix=True)
        self.work_dir = work_dir
        # Any: the upload uses each backend's own client (boto3's, oss2's), beyond the
        # download interface model_sync's Backend protocol declares.
        self.backend: Any = make_backend(self.base.scheme, SyncSettings(models_dir=work_dir, storage=storage))
        self.failures = 0

    def uri_for(self, digest: str) -> SourceURI:
        hexd = digest.removeprefix("blake3:")
        return self.base.child(f"{hexd[:2]}/{hexd}")

    async def put(self, path: Path, digest: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(None, self._put, path, digest)

    def _put(self, path: Path, digest: str) -> str:
        uri = self.uri_for(digest)
        size = path.stat().st_size
        if self.base.scheme == "s3":
            md5 = hashlib.md5(path.read_bytes()).hexdigest() if size <= 64 << 20 else None  # noqa: S324 - S3's ETag
            extra = {"ContentMD5": base64.b64encode(bytes.fromhex(md5)).decode()} if md5 else {}
            if md5:  # one request, and S3 checks the bytes against Content-MD5 itself
                with open(path, "rb") as f:
                    self.backend.client.put_object(Bucket=uri.bucket, Key=uri.key, Body=f, **extra)
            else:
                self.backend.client.upload_file(str(path), uri.bucket, uri.key)
        else:
            import oss2  # oss2 checks each part's CRC64 against the server's (enable_crc)

            oss2.resumable_upload(
                self.backend.bucket(uri.bucket),
                uri.key,
                str(path),
                store=oss2.ResumableStore(root=str(self.work_dir / ".oss-upload")),
                multipart_threshold=64 << 20,
                part_size=16 << 20,
            )
        remote = self.backend.stat(uri)
        if remote.size != size or (
            self.base.scheme == "s3" and size <= 64 << 20 and remote.md5 and remote.md5 != md5
        ):
            raise MirrorError(
                f"{uri} does not match the local file after the upload ({remote.size} bytes, {size} expected)"
            )
        return str(uri)

    def fetch(self, uri_text: str, digest: str, dest: Path) -> None:
        uri = parse_uri(uri_text)
        remote = self.backend.stat(uri)
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(f".{dest.name}.part")
        self.backend.download(uri, remote, part, lambda n: None, lambda n: None, None)
        try:
            if digest_file(part) != digest:
                raise MirrorError(f"{uri} does not hash to {digest}; not served")
            os.replace(part, dest)
        finally:
            if part.exists():
                part.unlink()
