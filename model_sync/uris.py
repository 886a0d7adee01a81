"""Source URIs: oss://bucket/key, s3://bucket/key, hf://owner/repo/path@revision, https://..."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import ManifestError

SCHEMES = ("oss", "s3", "hf", "https", "http")


@dataclass(frozen=True)
class SourceURI:
    scheme: str
    bucket: str = ""  # oss/s3 bucket, hf "owner/repo"
    key: str = ""  # oss/s3 object key or prefix, hf path in the repo
    revision: str = ""  # hf only
    url: str = ""  # http(s) only

    def __str__(self) -> str:
        if self.scheme in ("http", "https"):
            return self.url
        rev = f"@{self.revision}" if self.revision else ""
        return f"{self.scheme}://{self.bucket}/{self.key}{rev}"

    def child(self, rel: str) -> SourceURI:
        """The URI of `rel` under this prefix (for --from and mirror)."""
        rel = rel.lstrip("/")
        if self.scheme in ("http", "https"):
            return SourceURI(self.scheme, url=self.url.rstrip("/") + "/" + rel)
        key = posixpath.join(self.key, rel) if self.key else rel
        return SourceURI(self.scheme, self.bucket, key, self.revision)


def parse_uri(text: str, *, prefix: bool = False) -> SourceURI:
    """Parse a source URI; `prefix=True` allows an empty key (a bucket or folder)."""
    if not isinstance(text, str) or "://" not in text:
        raise ManifestError(f"bad source URI {text!r}: expected oss://, s3://, hf:// or https://")
    scheme = text.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise ManifestError(
            f"bad source URI {text!r}: unsupported scheme {scheme!r} (use one of {', '.join(SCHEMES)})"
        )
    if scheme in ("http", "https"):
        parts = urlsplit(text)
        if not parts.netloc or (not prefix and parts.path in ("", "/")):
            raise ManifestError(f"bad source URI {text!r}: no host or path")
        return SourceURI(scheme, url=text)
    rest = text.split("://", 1)[1]
    if scheme == "hf":
        revision = ""
        if "@" in rest:
            rest, revision = rest.rsplit("@", 1)
            if not revision or "/" in revision and not revision.startswith("refs/"):
                raise ManifestError(f"bad source URI {text!r}: empty or malformed @revision")
        bits = rest.split("/")
        if len(bits) < 2 or not bits[0] or not bits[1]:
            raise ManifestError(f"bad source URI {text!r}: expected hf://owner/repo/path@revision")
        path = "/".join(bits[2:])
        if not path and not prefix:
            raise ManifestError(f"bad source URI {text!r}: no file path inside the repository")
        return SourceURI("hf", f"{bits[0]}/{bits[1]}", path, revision)
    bucket, _, key = rest.partition("/")
    if not bucket or any(c in bucket for c in " \\?#"):
        raise ManifestError(f"bad source URI {text!r}: missing or invalid bucket name")
    if not prefix and (not key or key.endswith("/")):
        raise ManifestError(f"bad source URI {text!r}: no object key after the bucket")
    return SourceURI(scheme, bucket, key.rstrip("/") if prefix else key)
