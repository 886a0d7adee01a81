"""Browser sessions, kept server-side so that logout and a password change revoke them.

The cookie carries only a random id. Sessions live in memory: a restart of the proxy
logs browsers out, which is the safe direction (scripts use tokens or Basic).
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

COOKIE = "comfy_session"


@dataclass
class Session:
    user: str
    generation: int
    expires: float


class Sessions:
    def __init__(self, lifetime_s: float):
        self.lifetime_s = lifetime_s
        self._by_id: dict[str, Session] = {}

    def create(self, user: str, generation: int) -> str:
        self._expire()
        sid = secrets.token_urlsafe(32)
        self._by_id[sid] = Session(user, generation, time.time() + self.lifetime_s)
        return sid

    def get(self, sid: str | None, generation: int) -> Session | None:
        if not sid:
            return None
        s = self._by_id.get(sid)
        if s is None:
            return None
        if s.expires < time.time() or s.generation != generation:
            self._by_id.pop(sid, None)
            return None
        return s

    def drop(self, sid: str | None) -> None:
        if sid:
            self._by_id.pop(sid, None)

    def drop_all(self) -> None:
        self._by_id.clear()

    def _expire(self) -> None:
        now = time.time()
        for sid in [k for k, v in self._by_id.items() if v.expires < now]:
            del self._by_id[sid]
