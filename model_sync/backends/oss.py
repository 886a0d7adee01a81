"""oss:// through oss2: credentials, resumable parallel download, OSS's CRC64.

Credentials, first match wins:
1. OSS_ACCESS_KEY_ID + OSS_ACCESS_KEY_SECRET (+ OSS_SESSION_TOKEN for STS tokens);
2. OSS_ECS_RAM_ROLE=<role>: the ECS instance's RAM role through oss2's
   EcsRamRoleCredentialsProvider (metadata server 100.100.100.200, refreshed before expiry);
3. ACK RRSA: ALIBABA_CLOUD_ROLE_ARN + ALIBABA_CLOUD_OIDC_PROVIDER_ARN +
   ALIBABA_CLOUD_OIDC_TOKEN_FILE (injected by the ack-pod-identity-webhook). oss2 has no
   OIDC provider, so the official alibabacloud-credentials library exchanges the token
   for STS credentials and we hand them to oss2 through its CredentialsProvider interface.
   This path is not exercised by the test suite (STS cannot be reached from it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import oss2
from oss2.credentials import Credentials, CredentialsProvider
from oss2.exceptions import ClientError, InconsistentError, OssError, RequestError, ServerError
from requests.exceptions import ConnectionError as RequestsConnectionError

from comfy_stack.files import discard_partial

from ..errors import (
    CredentialsError,
    EndpointError,
    NotFoundError,
    SourceChangedError,
    SyncError,
    TransferError,
    TransientError,
    UsageError,
    VerificationError,
)
from ..partial import clear_link
from ..planner import RemoteObject
from ..settings import Settings, Storage
from ..uris import SourceURI
from ..verify import etag_md5

log = logging.getLogger(__name__)
_CRED_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "SecurityTokenExpired",
    "InvalidSecurityToken",
}


class _RRSACredentials(CredentialsProvider):
    """oss2 CredentialsProvider fed by alibabacloud-credentials' OIDC provider (ACK RRSA).

    The provider reads ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN and
    ALIBABA_CLOUD_OIDC_TOKEN_FILE, calls STS AssumeRoleWithOIDC (the VPC endpoint with
    ALIBABA_CLOUD_STS_REGION + ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED=true) and refreshes the
    credentials before they expire.
    """

    def __init__(self):
        from alibabacloud_credentials.provider.oidc import OIDCRoleArnCredentialsProvider

        self._provider = OIDCRoleArnCredentialsProvider()

    def get_credentials(self):
        from alibabacloud_credentials.exceptions import CredentialException
        from Tea.exceptions import RetryError, TeaException

        try:
            cred = self._provider.get_credentials()
        except (CredentialException, RetryError, TeaException, OSError, ValueError) as exc:
            raise ClientError(f"cannot get RRSA credentials from STS: {exc}") from None
        return Credentials(cred.get_access_key_id(), cred.get_access_key_secret(), cred.get_security_token())


def make_auth(s: Storage):
    ak, sk = s.oss_access_key_id, s.oss_access_key_secret
    if ak and sk:
        token = s.oss_session_token
        return oss2.StsAuth(ak, sk, token) if token else oss2.Auth(ak, sk)
    if s.oss_ecs_ram_role:
        base = s.oss_ecs_metadata_url  # overridable for tests/proxies
        return oss2.ProviderAuth(
            oss2.EcsRamRoleCredentialsProvider(
                base.rstrip("/") + "/" + s.oss_ecs_ram_role, max_retries=2, timeout=5
            )
        )
    if s.oss_rrsa:
        try:
            return oss2.ProviderAuth(_RRSACredentials())
        except ImportError:
            raise CredentialsError(
                "RRSA variables are set but alibabacloud-credentials is not "
                "installed (pip install alibabacloud-credentials)"
            ) from None
    raise CredentialsError(
        "no OSS credentials: set OSS_ACCESS_KEY_ID and OSS_ACCESS_KEY_SECRET "
        "(plus OSS_SESSION_TOKEN for STS), OSS_ECS_RAM_ROLE on ECS, or enable "
        "RRSA on ACK (see docs/models.md)"
    )


def translate(exc: Exception, what: str) -> SyncError:
    if isinstance(exc, ClientError):
        detail = exc.body.decode() if isinstance(exc.body, bytes) else str(exc.body)
        detail = detail.removeprefix("ClientError: ")
        if "credentials" in detail.lower():
            return CredentialsError(
                f"{what}: {detail}; check OSS_ECS_RAM_ROLE (the role must be "
                "attached to this instance) or the RRSA setup (docs/models.md)"
            )
        return UsageError(f"{what}: {detail}")
    if isinstance(exc, InconsistentError):
        return VerificationError(
            f"{what}: CRC64 of the downloaded bytes does not match the object's x-oss-hash-crc64ecma"
        )
    if isinstance(exc, RequestError):
        inner = getattr(exc, "exception", None)
        if (
            isinstance(inner, RequestsConnectionError)
            and "refused" in str(inner).lower()
            or "Name or service not known" in str(inner)
            or "NameResolution" in str(inner)
        ):
            return EndpointError(
                f"{what}: cannot reach the OSS endpoint ({inner}); check "
                "OSS_ENDPOINT (inside Alibaba Cloud use the -internal endpoint)"
            )
        return TransientError(f"{what}: {inner or exc}")
    if isinstance(exc, ServerError):
        code, status = exc.code or "", exc.status
        if code in _CRED_CODES or status == 403:
            return CredentialsError(
                f"{what}: OSS rejected the credentials ({code or status}); "
                "check OSS_ACCESS_KEY_ID / OSS_ACCESS_KEY_SECRET / "
                "OSS_SESSION_TOKEN or the RAM policy"
            )
        if status == 404:
            return NotFoundError(
                f"{what}: not found ({code or 404}); check the bucket and key "
                "in the manifest or --from, and OSS_ENDPOINT's region"
            )
        if status == 412:
            return SourceChangedError(f"{what}: the object changed during the download (HTTP 412)")
        if status >= 500:
            return TransientError(f"{what}: OSS server error {status} {code}")
        return TransferError(f"{what}: OSS error {status} {code}: {exc.message}")
    return TransferError(f"{what}: {type(exc).__name__}: {exc}")


class OSSBackend:
    # oss2 fetches small objects without If-Match, after a HEAD of its own
    pins_version = False

    def __init__(self, settings: Settings):
        self.settings = settings
        self.endpoint = settings.storage.oss_endpoint
        if not self.endpoint:
            raise UsageError(
                "oss:// sources need OSS_ENDPOINT, e.g. "
                "https://oss-cn-hangzhou-internal.aliyuncs.com inside Alibaba Cloud"
            )
        if "://" not in self.endpoint:
            self.endpoint = "https://" + self.endpoint
        self.auth = make_auth(settings.storage)
        self.session = oss2.Session(
            pool_size=settings.range_threads * settings.file_workers + settings.stat_workers
        )
        self._buckets: dict[str, oss2.Bucket] = {}
        self.store_root = settings.state_dir / "oss-checkpoints"

    def bucket(self, name: str) -> oss2.Bucket:
        if name not in self._buckets:
            self._buckets[name] = oss2.Bucket(
                self.auth, self.endpoint, name, session=self.session, connect_timeout=self.settings.timeout
            )
        return self._buckets[name]

    @staticmethod
    def _remote(size: int, etag: str, crc: str | None, kind: str | None = None) -> RemoteObject:
        etag = (etag or "").strip('"')
        # Without a CRC64 (objects copied in by tools that drop it, S3-compatible gateways in
        # front of OSS) the ETag is the digest left: OSS makes it the content's MD5 for a
        # "Normal" object (PutObject, PostObject); multipart ETags end in "-N" and appendable
        # objects' are no MD5 at all, so those are checked by size only.
        md5 = etag_md5(etag) if kind == "Normal" else None
        return RemoteObject(
            size=int(size), identity=f"oss:{etag}:{size}", etag=etag, crc64=str(crc) if crc else None, md5=md5
        )

    def stat(self, uri: SourceURI) -> RemoteObject:
        try:
            head = self.bucket(uri.bucket).head_object(uri.key)
        except OssError as exc:
            raise translate(exc, str(uri)) from None
        return self._remote(head.content_length, head.etag, head.server_crc, head.object_type)

    def list(self, prefix: SourceURI) -> dict[str, RemoteObject]:
        base = prefix.key.rstrip("/") + "/" if prefix.key else ""
        out = {}
        try:
            for obj in oss2.ObjectIteratorV2(self.bucket(prefix.bucket), prefix=base):
                if obj.key.endswith("/"):
                    continue
                # Listings carry no CRC64: a HEAD per new file fills it in at download time
                # (and the MD5 is left to that HEAD too, which may bring the cheaper CRC64).
                out[obj.key[len(base) :]] = replace(self._remote(obj.size, obj.etag, None), listed=True)
        except OssError as exc:
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
        seen: list[int | None] = [None]

        def progress(consumed: int, total: int | None) -> None:
            # oss2 reports a running total; its first report of a resumed download is the
            # bytes that earlier attempts already finished.
            if seen[0] is None:
                seen[0] = consumed
                if consumed:
                    on_resume(consumed)
            elif consumed > seen[0]:
                on_bytes(consumed - seen[0])
                seen[0] = consumed

        store = oss2.ResumableDownloadStore(root=str(self.store_root), dir=".")
        # oss2 opens these by name, following links: take away any planted at them first.
        for name in (part, self._checkpoint(uri, part), *part.parent.glob(part.name + ".tmp-*")):
            clear_link(name)
        try:
            oss2.resumable_download(
                self.bucket(uri.bucket),
                uri.key,
                str(part),
                multiget_threshold=self.settings.part_size,
                part_size=self.settings.part_size,
                num_threads=self.settings.range_threads,
                store=store,
                progress_callback=progress,
            )
        except OssError as exc:
            raise translate(exc, str(uri)) from None
        except (OSError, ValueError) as exc:
            raise TransientError(f"{uri}: {type(exc).__name__}: {exc}") from None
        if digests is not None and self.bucket(uri.bucket).enable_crc and remote.crc64:
            # oss2 computed the CRC64 of the bytes it wrote (combined from the parts) and
            # compared it with the server's; re-reading a 20 GB file to repeat that is waste.
            digests.vouched_crc64 = remote.crc64

    def discard(self, uri: SourceURI, part: Path) -> None:
        # oss2 names its own temp file <part>.tmp-<random> and records it in the checkpoint.
        discard_partial(part, self._checkpoint(uri, part), *part.parent.glob(part.name + ".tmp-*"))

    def _checkpoint(self, uri: SourceURI, part: Path) -> Path:
        """oss2's record of the parts it finished for this download."""
        return self.store_root / oss2.ResumableDownloadStore.make_store_key(
            uri.bucket, uri.key, os.path.abspath(part)
        )
