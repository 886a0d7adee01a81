"""Browser sessions, kept server-side so that logout and a password change revoke them.

The cookie carries only a random id. The proxy keeps each session under the sha256 of
that id in AUTH_PROXY_STATE_DIR/sessions.json (mode 0600, written atomically), so a
restart of the proxy or the container does not log browsers out, and a copy of the file
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

from auth_proxy.errors import StateError
from auth_proxy.state import read_json, write_json_atomic

COOKIE = "comfy_session"
SESSIONS_FILE = "sessions.json"
log = logging.getLogger(__name__)


@dataclass
class Session:
    user: str
    generation: int
    expires: float


def _key(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class Sessions:
    def __init__(self, lifetime_s: float, state_dir: Path | None = None):
        self.lifetime_s = lifetime_s
        self.path = state_dir / SESSIONS_FILE if state_dir else None
        self._by_key: dict[str, Session] = {}
        self._load()

    def create(self, user: str, generation: int) -> str:
        self._expire()
        sid = secrets.token_urlsafe(32)
        self._by_key[_key(sid)] = Session(user, generation, time.time() + self.lifetime_s)
        self._save()
        return sid

    def get(self, sid: str | None, generation: int) -> Session | None:
        if not sid:
            return None
        key = _key(sid)
        s = self._by_key.get(key)
        if s is None:
            return None
        if s.expires < time.time() or s.generation != generation:
            self._by_key.pop(key, None)
            self._save()
            return None
        return s

    def drop(self, sid: str | None) -> None:
        if sid and self._by_key.pop(_key(sid), None) is not None:
            self._save()

    def drop_all(self) -> None:
        self._by_key.clear()
        self._save()

    def _expire(self) -> None:
        now = time.time()
        for key in [k for k, v in self._by_key.items() if v.expires < now]:
            del self._by_key[key]

    def _load(self) -> None:
        if self.path is None:
            return
        try:
            data = read_json(self.path) or {}
            self._by_key = {k: Session(**v) for k, v in data.get("sessions", {}).items()}
        except (StateError, TypeError, AttributeError) as exc:
            # Losing sessions only means logging in again; refusing to start would be worse.
            log.warning("ignoring unreadable %s (%s): browsers will log in again", self.path, exc)
            self._by_key = {}
        self._expire()

    def _save(self) -> None:
        if self.path is not None:
            write_json_atomic(self.path, {"sessions": {k: asdict(v) for k, v in self._by_key.items()}})
