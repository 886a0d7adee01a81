"""https:// (and http:// on loopback for tests) with resume through Range/If-Range."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import requests

from comfy_stack.files import discard_partial, read_json, sidecar_path, write_json

from ..errors import (
    EndpointError,
    NotFoundError,
    SourceChangedError,
    SyncError,
    TransferError,
    TransientError,
    for_status,
)
from ..partial import open_partial
from ..planner import RemoteObject
from ..settings import Settings
from ..uris import SourceURI

log = logging.getLogger(__name__)
CHUNK = 64 * 1024  # small reads: a reset loses at most one read of data


def translate(exc: Exception, what: str, hint: str = "check the URL") -> SyncError:
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return for_status(exc.response.status_code, what, hint)
    if (
        isinstance(exc, requests.ConnectionError)
        and not isinstance(exc, (requests.exceptions.ChunkedEncodingError,))
        and "refused" in str(exc).lower()
    ):
        return EndpointError(f"{what}: cannot connect ({exc}); {hint}")
    if isinstance(exc, requests.RequestException):
        return TransientError(f"{what}: {type(exc).__name__}: {exc}")
    return TransferError(f"{what}: {type(exc).__name__}: {exc}")


def _length(headers) -> int | None:
    """Content-Length, or None when it is missing or not one number (requests joins a header
    sent twice with ", ": equal copies are still one length)."""
    values = {v.strip() for v in headers.get("Content-Length", "").split(",")}
    value = values.pop() if len(values) == 1 else ""
    return int(value) if value.isdigit() else None


def _validator(headers) -> str:
    return headers.get("ETag") or headers.get("Last-Modified") or ""


class HTTPBackend:
    pins_version = False  # a plain GET takes whatever the URL serves now
    hint = "check the URL"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(
            pool_maxsize=settings.file_workers * settings.range_threads + settings.stat_workers
        )
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def headers(self) -> dict[str, str]:
        return {"Accept-Encoding": "identity"}

    def url(self, uri: SourceURI) -> str:
        return uri.url

    def stat(self, uri: SourceURI) -> RemoteObject:
        try:
            r = self.session.head(
                self.url(uri), headers=self.headers(), allow_redirects=True, timeout=self.settings.timeout
            )
            r.raise_for_status()
        except requests.RequestException as exc:
            raise translate(exc, str(uri), self.hint) from None
        size = _length(r.headers)
        if size is None:
            raise TransferError(f"{uri}: the server sends no Content-Length; cannot verify the size")
        return RemoteObject(
            size=size, identity=f"http:{_validator(r.headers)}:{size}", etag=r.headers.get("ETag")
        )

    def list(self, prefix: SourceURI) -> dict[str, RemoteObject]:
        raise NotFoundError(f"{prefix}: plain HTTP(S) has no listing; mirror an oss:// or s3:// prefix")

    def download(
        self,
        uri: SourceURI,
        remote: RemoteObject,
        part: Path,
        on_bytes: Callable[[int], None],
        on_resume: Callable[[int], None],
        digests=None,
    ) -> None:
        # One stream per file: an HTTPS origin (a CDN, the hub) is usually fastest with one
        # connection per file and many files in parallel; resume appends from what is there.
        side = sidecar_path(part)
        state = read_json(side, follow_symlinks=False)
        fd = open_partial(part, os.O_RDWR | os.O_CREAT)
        with os.fdopen(fd, "r+b") as f:
            have = os.fstat(fd).st_size
            if not state or state.get("identity") != remote.identity or have > remote.size:
                have = 0
            headers = self.headers()
            if have:
                headers["Range"] = f"bytes={have}-"
                if remote.etag:
                    headers["If-Range"] = remote.etag
            write_json(side, {"identity": remote.identity}, fsync=False)
            try:
                with self.session.get(
                    self.url(uri), headers=headers, stream=True, timeout=self.settings.timeout
                ) as r:
                    r.raise_for_status()
                    length = _length(r.headers)
                    if r.status_code == 200 and length is not None and length != remote.size:
                        raise SourceChangedError(
                            f"{uri}: the server now sends {length} bytes, not {remote.size}"
                        )
                    if have and r.status_code == 206:
                        on_resume(have)
                        if digests is not None and digests.needed:
                            while block := f.read(min(CHUNK, have - f.tell())):
                                digests.update(block)
                        f.seek(have)
                    else:
                        have = 0
                    f.truncate(have)
                    for chunk in r.iter_content(CHUNK):
                        f.write(chunk)
                        if digests is not None:
                            digests.update(chunk)
                        have += len(chunk)
                        on_bytes(len(chunk))
                    f.flush()
                    os.fsync(fd)
            except requests.RequestException as exc:
                raise translate(exc, str(uri), self.hint) from None
        if have != remote.size:
            raise TransientError(f"{uri}: truncated body: {have} of {remote.size} bytes")

    def discard(self, uri: SourceURI, part: Path) -> None:
        discard_partial(part)
