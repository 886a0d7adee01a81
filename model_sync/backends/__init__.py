"""Source backends: one module per kind of store, all with the interface in base.py."""

from __future__ import annotations

from ..settings import Settings
from .base import Backend


def make_backend(scheme: str, settings: Settings) -> Backend:
    # Imported lazily: a sync from OSS should not pay for importing boto3 and vice versa.
    if scheme == "s3":
        from .s3 import S3Backend

        return S3Backend(settings)
    if scheme == "oss":
        from .oss import OSSBackend

        return OSSBackend(settings)
    if scheme == "hf":
        from .hf import HFBackend

        return HFBackend(settings)
    from .http import HTTPBackend

    return HTTPBackend(settings)
