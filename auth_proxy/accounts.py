"""What the proxy keeps: the admin's password hash and the API tokens' hashes.

Behind a small storage interface (`AuthBackend`, which browser sessions use too):
`FileBackend` keeps them in AUTH_PROXY_STATE_DIR, mode 0600, each file written atomically
(a unique temp file in the same folder, fsync, os.replace) so a crash never leaves half a
file; a cluster's gateways share them in PostgreSQL instead (auth_proxy/accounts_sql.py, with
COMFY_JOBS_DATABASE_URL), so a token, a password change or a logout on one replica holds
on every replica.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from auth_proxy import hashing
from auth_proxy.errors import StateError, TokenError
from comfy_stack.files import PRIVATE, write_json

log = logging.getLogger(__name__)
ADMIN_FILE = "admin.json"
TOKENS_FILE = "tokens.json"
SESSIONS_FILE = "sessions.json"
ADMIN_REFRESH_S = 1.0  # shared backend: how stale a replica's copy of the account may be
DEFAULT_PASSWORD = "admin"


def write_json_atomic(path: Path, data: dict) -> None:
    try:
        write_json(path, data, indent=1, mode=PRIVATE)
    except OSError as exc:
        raise StateError(f"cannot write {path}: {exc.strerror}; check AUTH_PROXY_STATE_DIR") from None


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StateError(f"cannot read {path}: {exc}; fix or remove it") from None


class AuthBackend(Protocol):
    """Where the account, the tokens and the browser sessions are kept. Every call is quick
    and synchronous (a file, or one indexed row), as the gate's checks are."""

    shared: bool  # several processes write it: re-read rather than trust a cached copy

    def load_admin(self) -> dict | None: ...
    def save_admin(self, data: dict) -> None: ...
    def tokens(self) -> dict[str, dict]: ...
    def add_token(self, name: str, record: dict) -> bool:
        """False when the name is taken."""

    def drop_token(self, name: str) -> bool: ...
    def session(self, key: str) -> dict | None: ...
    def put_session(self, key: str, record: dict) -> None: ...
    def drop_session(self, key: str) -> None: ...
    def drop_sessions(self, expired_before: float | None = None) -> None:
        """Every session, or only those that expired before the time given."""


class FileBackend:
    """admin.json, tokens.json and sessions.json in the state directory (one box)."""

    shared = False

    def __init__(self, state_dir: Path):
        self.dir = state_dir
        private_dir(state_dir)
        self._tokens_cache: tuple[tuple[int, int], dict] | None = None
        self._sessions: dict[str, dict] | None = None

    def load_admin(self) -> dict | None:
        return read_json(self.dir / ADMIN_FILE)

    def save_admin(self, data: dict) -> None:
        write_json_atomic(self.dir / ADMIN_FILE, data)

    def tokens(self) -> dict[str, dict]:
        # Re-read only when the file changed (the CLI writes it from another process),
        # so a Bearer request costs a stat, not a JSON parse.
        path = self.dir / TOKENS_FILE
        try:
            st = path.stat()
            key = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            return {}
        if self._tokens_cache is None or self._tokens_cache[0] != key:
            self._tokens_cache = (key, (read_json(path) or {}).get("tokens", {}))
        return dict(self._tokens_cache[1])

    def add_token(self, name: str, record: dict) -> bool:
        tokens = self.tokens()
        if name in tokens:
            return False
        tokens[name] = record
        write_json_atomic(self.dir / TOKENS_FILE, {"tokens": tokens})
        return True

    def drop_token(self, name: str) -> bool:
        tokens = self.tokens()
        if tokens.pop(name, None) is None:
            return False
        write_json_atomic(self.dir / TOKENS_FILE, {"tokens": tokens})
        return True

    # Sessions are held in memory and written through on every change.
    def _all_sessions(self) -> dict[str, dict]:
        if self._sessions is None:
            try:
                data = read_json(self.dir / SESSIONS_FILE) or {}
                self._sessions = {k: dict(v) for k, v in data.get("sessions", {}).items()}
            except (StateError, AttributeError, TypeError) as exc:
                # Losing sessions only means logging in again; refusing to start would be worse.
                log.warning(
                    "ignoring unreadable %s (%s): browsers will log in again", self.dir / SESSIONS_FILE, exc
                )
                self._sessions = {}
        return self._sessions

    def _save_sessions(self) -> None:
        write_json_atomic(self.dir / SESSIONS_FILE, {"sessions": self._all_sessions()})

    def session(self, key: str) -> dict | None:
        return self._all_sessions().get(key)

    def put_session(self, key: str, record: dict) -> None:
        self._all_sessions()[key] = record
        self._save_sessions()

    def drop_session(self, key: str) -> None:
        if self._all_sessions().pop(key, None) is not None:
            self._save_sessions()

    def drop_sessions(self, expired_before: float | None = None) -> None:
        sessions = self._all_sessions()
        gone = [
            k for k, v in sessions.items() if expired_before is None or v.get("expires", 0) < expired_before
        ]
        for k in gone:
            del sessions[k]
        if gone or expired_before is None:
            self._save_sessions()


def token_digest(token: str) -> str:
    # Tokens are 256 random bits, so a fast hash is enough (no dictionary to attack) and
    # keeps per-request checks cheap; passwords get argon2.
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Admin:
    user: str
    password_hash: str
    must_change: bool
    generation: int  # bumped on every password change; sessions of older ones are void


def private_dir(path: Path) -> None:
    """The state directory, readable by its owner only (it holds the password hash)."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(f"cannot create {path}: {exc.strerror}; check AUTH_PROXY_STATE_DIR") from None
    if path.stat().st_mode & 0o077:
        try:
            path.chmod(0o700)
        except OSError as exc:
            log.warning("cannot make %s private (mode 0700): %s", path, exc.strerror)


class Store:
    def __init__(self, state_dir: Path, backend: AuthBackend | None = None):
        self.dir = state_dir
        self.backend: AuthBackend = backend or FileBackend(state_dir)
        self._admin_read = 0.0

    # --- admin -----------------------------------------------------------------------
    def load_admin(self, user: str, configured_password: str | None) -> Admin:
        """The admin account, created or updated from the configured password."""
        data = self.backend.load_admin()
        if data is None:
            password = configured_password or DEFAULT_PASSWORD
            admin = Admin(user, hashing.hash_password(password), configured_password is None, 1)
            self.save_admin(admin)
            return admin
        admin = self._admin_of(data)
        if admin.user != user:
            admin.user = user
            self.save_admin(admin)
        if configured_password is not None and not self._matches(admin.password_hash, configured_password):
            # The environment is the source of truth when it names a password.
            admin.password_hash = hashing.hash_password(configured_password)
            admin.must_change = False
            admin.generation += 1
            self.save_admin(admin)
        self._admin_read = time.monotonic()
        return admin

    @staticmethod
    def _admin_of(data: dict) -> Admin:
        return Admin(
            data["user"], data["password_hash"], bool(data["must_change"]), int(data.get("generation", 1))
        )

    def fresh(self, admin: Admin) -> Admin:
        """`admin`, updated in place from a shared backend when another replica may have
        changed the password (at most ADMIN_REFRESH_S old); as it is for files."""
        if self.backend.shared and time.monotonic() - self._admin_read > ADMIN_REFRESH_S:
            self._admin_read = time.monotonic()
            data = self.backend.load_admin()
            if data is not None:
                stored = self._admin_of(data)
                admin.password_hash, admin.must_change = stored.password_hash, stored.must_change
                admin.generation = stored.generation
        return admin

    def save_admin(self, admin: Admin) -> None:
        self.backend.save_admin(
            {
                "user": admin.user,
                "password_hash": admin.password_hash,
                "must_change": admin.must_change,
                "generation": admin.generation,
            }
        )

    @staticmethod
    def _matches(password_hash: str, password: str) -> bool:
        return hashing.verify(password_hash, password)

    def check_password(self, admin: Admin, user: str, password: str) -> bool:
        user_ok = hmac.compare_digest(user.encode(), admin.user.encode())
        ok = self._matches(admin.password_hash if user_ok else hashing.dummy_hash(), password)
        return user_ok and ok

    def change_password(self, admin: Admin, new_password: str) -> None:
        admin.password_hash = hashing.hash_password(new_password)
        admin.must_change = False
        admin.generation += 1
        self.save_admin(admin)

    # --- tokens ----------------------------------------------------------------------
    def tokens(self) -> dict[str, dict]:
        return self.backend.tokens()

    def create_token(self, name: str) -> str:
        if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise TokenError(f"token name {name!r}: use letters, digits, '-', '_' or '.'")
        token = "cst_" + secrets.token_urlsafe(32)
        if not self.backend.add_token(name, {"sha256": token_digest(token), "created": int(time.time())}):
            raise TokenError(f"a token named {name!r} exists; revoke it first or pick another name")
        return token

    def revoke_token(self, name: str) -> None:
        if not self.backend.drop_token(name):
            raise TokenError(f"no token named {name!r}; `token list` shows the names")

    def find_token(self, token: str) -> str | None:
        """The name of the token, or None. Reads the store each time so that a token
        created or revoked from the command line takes effect without a restart."""
        digest = token_digest(token)
        found = None
        for name, rec in self.tokens().items():
            if hmac.compare_digest(digest, rec["sha256"]):
                found = name
        return found
