"""hf://owner/repo/path@revision through huggingface_hub.

huggingface_hub resolves the URL (HF_ENDPOINT mirrors) and the file's metadata: the commit
the revision points at and the file's ETag, which for LFS files is its sha256. The bytes
then go through the resumable HTTP download into our own partial file: hf_hub_download
would write into a hub cache layout, not into ComfyUI's folders with our verification.
"""

from __future__ import annotations

import importlib
import re

import huggingface_hub
from huggingface_hub.errors import OfflineModeIsEnabled
from huggingface_hub.utils import HfHubHTTPError

from ..errors import EndpointError, NotFoundError, SyncError, TransferError, UsageError, for_status
from ..planner import RemoteObject
from ..uris import SourceURI
from .http import HTTPBackend


def _network_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError, ValueError]
    for module in ("httpx", "httpx2", "requests"):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        for name in ("TransportError", "RequestException"):
            if isinstance(getattr(mod, name, None), type):
                errors.append(getattr(mod, name))
    return tuple(errors)


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class HFBackend(HTTPBackend):
    hint = "check the hf:// URI, HF_TOKEN for gated repositories, and HF_ENDPOINT"

    def headers(self) -> dict[str, str]:
        h = super().headers()
        token = self.settings.storage.hf_token
        if token:
            h["Authorization"] = f"Bearer {token}"
        return h

    def url(self, uri: SourceURI) -> str:
        return huggingface_hub.hf_hub_url(
            uri.bucket,
            uri.key,
            revision=uri.revision or "main",
            endpoint=self.settings.storage.hf_endpoint or None,
        )

    def stat(self, uri: SourceURI) -> RemoteObject:
        try:
            meta = huggingface_hub.get_hf_file_metadata(
                self.url(uri), token=self.settings.storage.hf_token or None, timeout=self.settings.timeout
            )
        except HfHubHTTPError as exc:
            raise _translate_hub(exc, str(uri), self.hint) from None
        except OfflineModeIsEnabled:
            # A setting, not an outage: retrying cannot help.
            raise UsageError(
                f"{uri}: HF_HUB_OFFLINE is set, which forbids reaching the hub; unset it "
                "for the sync (comfy-stack sets it for ComfyUI's process only)"
            ) from None
        except _network_errors() as exc:
            # huggingface_hub lets its HTTP client's transport errors through: OSError
            # subclasses from requests-based releases, httpx transport errors from newer ones
            raise EndpointError(
                f"{uri}: cannot reach the hub ({type(exc).__name__}: {exc}); {self.hint}"
            ) from None
        if meta.size is None:
            raise NotFoundError(f"{uri}: the hub reported no size; {self.hint}")
        etag = (meta.etag or "").strip('"')
        # The ETag (an LFS file's sha256) names the content; the commit does not: a new commit
        # that leaves this file alone must not re-download it.
        return RemoteObject(
            size=meta.size,
            identity=f"hf:{etag}:{meta.size}",
            etag=None,
            sha256=etag if _SHA256.match(etag) else None,
            revision=meta.commit_hash or None,
        )

    def list(self, prefix: SourceURI) -> dict[str, RemoteObject]:
        raise NotFoundError(
            f"{prefix}: mirror works on oss:// and s3:// prefixes; list hub files in the manifest instead"
        )


def _translate_hub(exc: HfHubHTTPError, what: str, hint: str) -> SyncError:
    if getattr(exc, "response", None) is None:
        return TransferError(f"{what}: {exc}")
    return for_status(
        exc.response.status_code,
        what,
        hint,
        denied=" (gated or private)",
        missing="not on the hub (HTTP 404)",
        detail=str(exc),
    )
