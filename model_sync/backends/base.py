"""The interface every backend implements."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ..planner import RemoteObject
from ..uris import SourceURI
from ..verify import Digests


class Backend(Protocol):
    # Every GET of an object names the version it was planned with (If-Match on the ETag),
    # so a copy that fails verification is a bad copy, never a replaced object.
    pins_version: bool

    def stat(self, uri: SourceURI) -> RemoteObject:
        """Size and identity of one object; raises NotFoundError/CredentialsError/..."""

    def list(self, prefix: SourceURI) -> dict[str, RemoteObject]:
        """Every object under a prefix, keyed by its path relative to the prefix."""

    def download(
        self,
        uri: SourceURI,
        remote: RemoteObject,
        part: Path,
        on_bytes: Callable[[int], None],
        on_resume: Callable[[int], None],
        digests: Digests,
    ) -> None:
        """Fill `part` with the object's bytes, resuming what an earlier attempt left there,
        feeding `digests` in file order where the transfer allows it."""

    def discard(self, uri: SourceURI, part: Path) -> None:
        """Forget a partial download (it failed verification): the next attempt starts over."""
