"""Basic credentials that recently passed the argon2 check.

HTTP Basic sends the password with every request, and an argon2 verification costs about
0.1 s of CPU by design; without this, a script using Basic would pay that on each request
and stall everyone else's traffic meanwhile. A success is remembered for a few minutes
under an HMAC of (password generation, user, password) with a key that lives only in this
process, so the memory holds nothing that reveals or replays the password, and changing
the password (a new generation) forgets every entry.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict


class VerifiedCredentials:
    def __init__(self, ttl_s: float = 300.0, size: int = 64):
        self.ttl_s, self.size = ttl_s, size
        self._key = secrets.token_bytes(32)
        self._until: OrderedDict[str, float] = OrderedDict()

    def key(self, generation: int, user: str, password: str) -> str:
        msg = f"{generation}\0{user}\0{password}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def known(self, key: str) -> bool:
        until = self._until.get(key)
        if until is None:
            return False
        if until < time.monotonic():
            del self._until[key]
            return False
        return True

    def add(self, key: str) -> None:
        self._until[key] = time.monotonic() + self.ttl_s
        self._until.move_to_end(key)
        while len(self._until) > self.size:
            self._until.popitem(last=False)

    def clear(self) -> None:
        self._until.clear()
