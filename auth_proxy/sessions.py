"""Browser sessions, kept server-side so that logout and a password change revoke them.

The cookie carries only a random id. The proxy keeps each session under the sha256 of
that id (auth_proxy/accounts.py's backend: AUTH_PROXY_STATE_DIR/sessions.json, mode 0600,
written atomically; or the cluster's PostgreSQL, shared by every gateway replica), so a
restart of the proxy or the container does not log browsers out, and a copy of the store
holds nothing a browser could present. A session also ends when the admin password
changes (its generation no longer matches) or when it expires.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from auth_proxy.accounts import AuthBackend, FileBackend

COOKIE = "comfy_session"
log = logging.getLogger(__name__)
SWEEP_EVERY_S = 600.0  # expired sessions are removed from a shared store this often


@dataclass
class Session:
    user: str
    generation: int
    expires: float


def _key(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class Sessions:
    def __init__(self, lifetime_s: float, state_dir: Path | None = None, backend: AuthBackend | None = None):
        self.lifetime_s = lifetime_s
        # no state dir and no backend: in memory only (sessions end with the process)
        self.backend = backend or (FileBackend(state_dir) if state_dir else None)
        self._memory: dict[str, dict] = {}
        self._swept = 0.0
        self._expire()  # at start: an unreadable file is reported now, not at the first login

    def _get(self, key: str) -> dict | None:
        return self.backend.session(key) if self.backend else self._memory.get(key)

    def create(self, user: str, generation: int) -> str:
        self._expire()
        sid = secrets.token_urlsafe(32)
        record = asdict(Session(user, generation, time.time() + self.lifetime_s))
        if self.backend:
            self.backend.put_session(_key(sid), record)
        else:
            self._memory[_key(sid)] = record
        return sid

    def get(self, sid: str | None, generation: int) -> Session | None:
        if not sid:
            return None
        key = _key(sid)
        data = self._get(key)
        if data is None:
            return None
        try:
            s = Session(**data)
        except TypeError:  # a record of another shape: as good as none
            self.drop_key(key)
            return None
        if s.expires < time.time() or s.generation != generation:
            self.drop_key(key)
            return None
        return s

    def drop(self, sid: str | None) -> None:
        if sid:
            self.drop_key(_key(sid))

    def drop_key(self, key: str) -> None:
        if self.backend:
            self.backend.drop_session(key)
        else:
            self._memory.pop(key, None)

    def drop_all(self) -> None:
        if self.backend:
            self.backend.drop_sessions()
        self._memory.clear()

    def _expire(self) -> None:
        now = time.time()
        if self.backend is None:
            self._memory = {k: v for k, v in self._memory.items() if v["expires"] >= now}
        elif not self.backend.shared or now - self._swept > SWEEP_EVERY_S:
            self._swept = now
            self.backend.drop_sessions(expired_before=now)
