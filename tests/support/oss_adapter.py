"""An OSS-dialect front for a local S3 server, so oss2 can be tested over real sockets.

No OSS emulator exists on the package registries. This adapter speaks OSS's wire protocol
(path-style URLs as oss2 uses for IP endpoints, `Authorization: OSS <id>:<signature>`,
ListObjectsV2 XML without the S3 namespace and with millisecond timestamps, OSS error XML,
`x-oss-request-id`, and `x-oss-hash-crc64ecma` computed over each object with oss2's own
CRC64) and keeps the bytes in the S3 server behind it. Reads, listings and single-request
uploads (PutObject) are covered; multipart uploads are not.
"""

from __future__ import annotations

import threading
import uuid
from urllib.parse import parse_qs, quote, unquote, urlsplit
from xml.sax.saxutils import escape

from oss2.utils import Crc64

from .threaded_server import QuietHandler, ThreadedServer

ACCESS_KEY_ID = "oss-test-key-id"


class OSSAdapter(ThreadedServer):
    def __init__(self, s3_client, access_key_id: str = ACCESS_KEY_ID):
        self.s3 = s3_client
        # key id -> the x-oss-security-token it needs (None for a long-term key pair)
        self.keys: dict[str, str | None] = {access_key_id: None}
        self._crc: dict[tuple[str, str, str], str] = {}
        # (bucket, key) of objects served without x-oss-hash-crc64ecma, as S3-compatible
        # gateways in front of OSS do and as objects copied in by tools that drop it are
        self.without_crc64: set[tuple[str, str]] = set()
        self._crc_lock = threading.Lock()
        super().__init__(_Handler)

    def crc64(self, bucket: str, key: str, etag: str) -> str:
        with self._crc_lock:
            if (bucket, key, etag) in self._crc:
                return self._crc[(bucket, key, etag)]
        crc = Crc64()
        body = self.s3.get_object(Bucket=bucket, Key=key)["Body"]
        while chunk := body.read(1 << 20):
            crc.update(chunk)
        with self._crc_lock:
            self._crc[(bucket, key, etag)] = str(crc.crc)
        return str(crc.crc)


class _Handler(QuietHandler):
    owner: OSSAdapter

    # --- helpers -------------------------------------------------------------------------------
    def _error(self, status: int, code: str, message: str) -> None:
        rid = uuid.uuid4().hex.upper()
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{escape(message)}</Message><RequestId>{rid}</RequestId>"
            f"<HostId>127.0.0.1</HostId></Error>"
        ).encode()
        self.send_response(status)
        self.send_header("x-oss-request-id", rid)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(0 if self.command == "HEAD" else len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _authorized(self) -> bool:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("OSS ") or ":" not in auth:
            self._error(403, "AccessDenied", "anonymous access is not allowed")
            return False
        key_id = auth[4:].split(":", 1)[0]
        if key_id not in self.owner.keys:
            self._error(
                403, "InvalidAccessKeyId", "The OSS Access Key Id you provided does not exist in our records."
            )
            return False
        token = self.owner.keys[key_id]
        if token is not None and self.headers.get("x-oss-security-token") != token:
            self._error(403, "InvalidSecurityToken", "The security token you provided is invalid.")
            return False
        return True

    def _s3_error(self, exc) -> None:
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
        if code in ("NoSuchKey", "404", "NotFound"):
            self._error(404, "NoSuchKey", "The specified key does not exist.")
        elif code == "NoSuchBucket":
            self._error(404, "NoSuchBucket", "The specified bucket does not exist.")
        elif code in ("PreconditionFailed", "412"):
            self._error(
                412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold."
            )
        else:
            self._error(status, code or "InternalError", str(exc))

    # --- verbs ---------------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self._object(head=True)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        bucket, _, key = unquote(parts.path).lstrip("/").partition("/")
        if not key:
            return self._list(bucket, parse_qs(parts.query, keep_blank_values=True))
        self._object(head=False)

    def do_PUT(self) -> None:
        """PutObject, as oss2's put_object and resumable_upload below its multipart threshold
        send it: OSS answers with the ETag and the CRC64 that oss2 checks against its own."""
        from botocore.exceptions import ClientError

        if not self._authorized():
            return
        parts = urlsplit(self.path)
        if "uploadId" in parts.query or "uploads" in parts.query:
            return self._error(501, "NotImplemented", "multipart uploads are not in this adapter")
        bucket, _, key = unquote(parts.path).lstrip("/").partition("/")
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            put = self.owner.s3.put_object(Bucket=bucket, Key=key, Body=body)
        except ClientError as exc:
            return self._s3_error(exc)
        etag = put["ETag"].strip('"').upper()
        crc = Crc64()
        crc.update(body)
        with self.owner._crc_lock:
            self.owner._crc[(bucket, key, etag)] = str(crc.crc)
        self.send_response(200)
        for k, v in {
            "ETag": f'"{etag}"',
            "x-oss-hash-crc64ecma": str(crc.crc),
            "x-oss-request-id": uuid.uuid4().hex.upper(),
            "Content-Length": "0",
        }.items():
            self.send_header(k, v)
        self.end_headers()

    def _object(self, head: bool) -> None:
        from botocore.exceptions import ClientError

        if not self._authorized():
            return
        bucket, _, key = unquote(urlsplit(self.path).path).lstrip("/").partition("/")
        try:
            meta = self.owner.s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                try:
                    self.owner.s3.head_bucket(Bucket=bucket)
                except ClientError:
                    return self._error(404, "NoSuchBucket", "The specified bucket does not exist.")
            return self._s3_error(exc)
        etag = meta["ETag"].strip('"').upper()  # OSS spells ETags in upper case
        if_match = self.headers.get("If-Match")
        if if_match and if_match.strip('"').upper() != etag:
            return self._error(412, "PreconditionFailed", "If-Match does not match the ETag")
        size = meta["ContentLength"]
        common = {
            "ETag": f'"{etag}"',
            "x-oss-object-type": "Normal",
            "x-oss-request-id": uuid.uuid4().hex.upper(),
            "Accept-Ranges": "bytes",
            "Last-Modified": meta["LastModified"].strftime("%a, %d %b %Y %H:%M:%S GMT"),
            "Content-Type": "application/octet-stream",
            "x-oss-storage-class": "Standard",
        }
        if (bucket, key) not in self.owner.without_crc64:
            common["x-oss-hash-crc64ecma"] = self.owner.crc64(bucket, key, etag)
        if head:
            self.send_response(200)
            for k, v in common.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            return
        rng = self.headers.get("Range")
        kwargs = {"Bucket": bucket, "Key": key}
        status = 200
        if rng and size:
            start_s, _, end_s = rng.split("=", 1)[1].partition("-")
            start = int(start_s)
            end = min(int(end_s), size - 1) if end_s else size - 1
            kwargs["Range"] = f"bytes={start}-{end}"
            status = 206
        try:
            obj = self.owner.s3.get_object(**kwargs)
        except ClientError as exc:
            return self._s3_error(exc)
        self.send_response(status)
        for k, v in common.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(obj["ContentLength"]))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        body = obj["Body"]
        while chunk := body.read(1 << 20):
            self.wfile.write(chunk)

    def _list(self, bucket: str, q: dict[str, list[str]]) -> None:
        from botocore.exceptions import ClientError

        if not self._authorized():
            return
        arg = lambda name, default="": (q.get(name) or [default])[0]  # noqa: E731
        kwargs = {"Bucket": bucket, "Prefix": arg("prefix"), "MaxKeys": int(arg("max-keys", "100"))}
        if arg("continuation-token"):
            kwargs["ContinuationToken"] = arg("continuation-token")
        if arg("delimiter"):
            kwargs["Delimiter"] = arg("delimiter")
        try:
            res = self.owner.s3.list_objects_v2(**kwargs)
        except ClientError as exc:
            return self._s3_error(exc)
        url = arg("encoding-type") == "url"
        enc = (lambda s: quote(s, safe="")) if url else escape
        items = []
        for o in res.get("Contents", []):
            items.append(
                f"<Contents><Key>{enc(o['Key'])}</Key>"
                f"<LastModified>{o['LastModified'].strftime('%Y-%m-%dT%H:%M:%S.000Z')}</LastModified>"
                f"<ETag>\"{o['ETag'].strip(chr(34)).upper()}\"</ETag><Type>Normal</Type>"
                f"<Size>{o['Size']}</Size><StorageClass>Standard</StorageClass></Contents>"
            )
        for p in res.get("CommonPrefixes", []):
            items.append(f"<CommonPrefixes><Prefix>{enc(p['Prefix'])}</Prefix></CommonPrefixes>")
        truncated = bool(res.get("IsTruncated"))
        token = res.get("NextContinuationToken") or ""
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult>'
            f"<Name>{escape(bucket)}</Name><Prefix>{enc(kwargs['Prefix'])}</Prefix>"
            f"<MaxKeys>{kwargs['MaxKeys']}</MaxKeys><Delimiter>{enc(arg('delimiter'))}</Delimiter>"
            + ("<EncodingType>url</EncodingType>" if url else "")
            + f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>"
            + (f"<NextContinuationToken>{escape(token)}</NextContinuationToken>" if truncated else "")
            + f"<KeyCount>{res.get('KeyCount', 0)}</KeyCount>"
            + "".join(items)
            + "</ListBucketResult>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/xml")
        self.send_header("x-oss-request-id", uuid.uuid4().hex.upper())
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
