"""Idempotency-Key: the header's rules and the digest of what it came with, one way for
jobs and uploads alike (the contract: the same key with the same request replays the
first answer, with another request it is refused; keys expire after 24 h)."""

from __future__ import annotations

import hashlib
import json

from comfy_jobs.errors import Unacceptable
from comfy_jobs.model import IdemKey


def idem_key(key: str | None, request: object, owner: str | None = None) -> IdemKey | None:
    """The key, the digest of `request` (anything JSON can write: a job's body, an upload's
    hash and fields) and whose key it is, or None without a key. Key order in objects does
    not matter, so a client that re-serialises its body replays rather than collides."""
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isascii() or any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise Unacceptable("invalid_request", "Idempotency-Key must be 1-255 printable ASCII characters")
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return IdemKey(key, hashlib.sha256(canonical.encode()).hexdigest(), owner)
