"""s3:// through boto3 (any S3-compatible store via AWS_ENDPOINT_URL)."""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Callable
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
)
from urllib3.exceptions import HTTPError as Urllib3Error

from comfy_stack.files import discard_partial

from .. import ranged
from ..errors import (
    CredentialsError,
    EndpointError,
    NotFoundError,
    SourceChangedError,
    SyncError,
    TransferError,
    TransientError,
)
from ..partial import open_partial
from ..planner import RemoteObject
from ..settings import Settings
from ..uris import SourceURI
from ..verify import etag_md5

log = logging.getLogger(__name__)
CHUNK = 1024 * 1024
_CRED_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "ExpiredToken",
    "InvalidToken",
    "403",
    "AuthorizationHeaderMalformed",
}


def translate(exc: Exception, what: str) -> SyncError:
    """Map a boto3/botocore failure to a typed error whose message names the setting to fix."""
    if isinstance(exc, NoCredentialsError):
        return CredentialsError(
            f"{what}: no S3 credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
        )
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _CRED_CODES:
            return CredentialsError(
                f"{what}: the store rejected the credentials ({code}); check "
                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN"
            )
        if code in ("NoSuchBucket", "NoSuchKey", "404", "NotFound"):
            return NotFoundError(
                f"{what}: not found ({code}); check the bucket and key in the "
                "manifest or --from, and AWS_ENDPOINT_URL"
            )
        if code == "PreconditionFailed" or status == 412:
            return SourceChangedError(f"{what}: the object changed during the download (HTTP 412)")
        if status >= 500 or code in ("SlowDown", "InternalError", "ServiceUnavailable"):
            return TransientError(f"{what}: server error {status} {code}")
        return TransferError(f"{what}: {code or status}: {exc}")
    if isinstance(exc, EndpointConnectionError):
        return EndpointError(
            f"{what}: cannot reach the S3 endpoint ({exc}); check AWS_ENDPOINT_URL and the network"
        )
    # Resets, timeouts, closed connections, short bodies and bodies whose x-amz-checksum
    # botocore found wrong: worth another attempt.
    if isinstance(
        exc,
        (
            FlexibleChecksumError,
            HTTPClientError,
            IncompleteReadError,
            Urllib3Error,
            ConnectionError,
            TimeoutError,
        ),
    ):
        return TransientError(f"{what}: {type(exc).__name__}: {exc}")
    return TransferError(f"{what}: {type(exc).__name__}: {exc}")


class S3Backend:
    pins_version = True  # every ranged GET carries If-Match

    def __init__(self, settings: Settings):
        self.settings = settings
        pool = settings.range_threads * settings.file_workers + settings.stat_workers
        self.client = boto3.session.Session().client(
            "s3",
            config=Config(
                connect_timeout=settings.timeout,
                read_timeout=settings.timeout,
                max_pool_connections=pool,
                # Our own loop retries whole files (keeping finished parts); botocore's retries
                # cover single requests, but not a body that breaks midway.
                retries={"max_attempts": 3, "mode": "standard"},
                s3={"addressing_style": "path"} if settings.storage.s3_endpoint else None,
            ),
        )

    @staticmethod
    def _remote(
        uri: SourceURI, size: int, etag: str | None, crc32: int | None = None, listed: bool = False
    ) -> RemoteObject:
        etag = (etag or "").strip('"')
        return RemoteObject(
            size=int(size),
            identity=f"etag:{etag}:{size}",
            etag=etag,
            md5=etag_md5(etag),
            crc32=crc32,
            listed=listed,
        )

    def stat(self, uri: SourceURI) -> RemoteObject:
        try:
            head = self.client.head_object(Bucket=uri.bucket, Key=uri.key, ChecksumMode="ENABLED")
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, str(uri)) from None
        return self._remote(uri, head["ContentLength"], head.get("ETag"), _full_crc32(head))

    def list(self, prefix: SourceURI) -> dict[str, RemoteObject]:
        base = prefix.key.rstrip("/") + "/" if prefix.key else ""
        out: dict[str, RemoteObject] = {}
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=prefix.bucket, Prefix=base
            ):
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    if key.endswith("/"):
                        continue
                    rel = key[len(base) :]
                    # Listings carry no checksums: a HEAD fills them in before a download.
                    out[rel] = self._remote(prefix.child(rel), obj["Size"], obj.get("ETag"), listed=True)
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, str(prefix)) from None
        return out

    def download(
        self,
        uri: SourceURI,
        remote: RemoteObject,
        part: Path,
        on_bytes: Callable[[int], None],
        on_resume: Callable[[int], None],
        digests=None,
    ) -> None:
        def fetch(start: int, end: int):
            try:
                resp = self.client.get_object(
                    Bucket=uri.bucket,
                    Key=uri.key,
                    Range=f"bytes={start}-{end - 1}",
                    IfMatch=f'"{remote.etag}"' if remote.etag else "*",
                )
                body = resp["Body"]
                try:
                    while chunk := body.read(CHUNK):
                        yield chunk
                finally:
                    body.close()
            except (BotoCoreError, ClientError, Urllib3Error, ConnectionError, TimeoutError) as exc:
                raise translate(exc, str(uri)) from None

        job = ranged.RangedJob(
            part, remote.size, remote.identity, self.settings.part_size, self.settings.range_threads
        )
        if remote.size == 0:
            discard_partial(part)
            os.close(open_partial(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC))
            return
        ranged.download_ranged(job, fetch, on_bytes, on_resume, digests)

    def discard(self, uri: SourceURI, part: Path) -> None:
        discard_partial(part)


def _full_crc32(head: dict) -> int | None:
    """The object's CRC32 if the store keeps a full-object one (not a multipart composite)."""
    value = head.get("ChecksumCRC32")
    if not value or "-" in value or head.get("ChecksumType") == "COMPOSITE":
        return None
    try:
        return int.from_bytes(base64.b64decode(value), "big")
    except ValueError:
        return None
