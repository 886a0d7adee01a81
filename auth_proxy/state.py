"""What the proxy keeps on disk: the admin's password hash and the API tokens' hashes.

Files live in AUTH_PROXY_STATE_DIR, mode 0600, each written atomically (a unique temp
file in the same folder, fsync, os.replace) so a crash never leaves half a file.
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

from auth_proxy import hashing
from auth_proxy.errors import StateError, TokenError
from comfy_stack.files import PRIVATE, write_json

log = logging.getLogger(__name__)
ADMIN_FILE = "admin.json"
TOKENS_FILE = "tokens.json"
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
    def __init__(self, state_dir: Path):
        self.dir = state_dir
        private_dir(state_dir)
        self._tokens_cache: tuple[tuple[int, int], dict] | None = None

    # --- admin -----------------------------------------------------------------------
    def load_admin(self, user: str, configured_password: str | None) -> Admin:
        """The admin account, created or updated from the configured password."""
        data = read_json(self.dir / ADMIN_FILE)
        if data is None:
            password = configured_password or DEFAULT_PASSWORD
            admin = Admin(user, hashing.hash_password(password), configured_password is None, 1)
            self.save_admin(admin)
            return admin
        admin = Admin(data["user"], data["password_hash"], bool(data["must_change"]),
                      int(data.get("generation", 1)))
        if admin.user != user:
            admin.user = user
            self.save_admin(admin)
        if configured_password is not None and not self._matches(admin.password_hash, configured_password):
            # The environment is the source of truth when it names a password.
            admin.password_hash = hashing.hash_password(configured_password)
            admin.must_change = False
            admin.generation += 1
            self.save_admin(admin)
        return admin

    def save_admin(self, admin: Admin) -> None:
        write_json_atomic(self.dir / ADMIN_FILE, {
            "user": admin.user, "password_hash": admin.password_hash,
            "must_change": admin.must_change, "generation": admin.generation})

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

    def create_token(self, name: str) -> str:
        if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise TokenError(f"token name {name!r}: use letters, digits, '-', '_' or '.'")
        tokens = self.tokens()
        if name in tokens:
            raise TokenError(f"a token named {name!r} exists; revoke it first or pick another name")
        token = "cst_" + secrets.token_urlsafe(32)
        tokens[name] = {"sha256": token_digest(token), "created": int(time.time())}
        write_json_atomic(self.dir / TOKENS_FILE, {"tokens": tokens})
        return token

    def revoke_token(self, name: str) -> None:
        tokens = self.tokens()
        if name not in tokens:
            raise TokenError(f"no token named {name!r}; `token list` shows the names")
        del tokens[name]
        write_json_atomic(self.dir / TOKENS_FILE, {"tokens": tokens})

    def find_token(self, token: str) -> str | None:
        """The name of the token, or None. Reads the file each time so that a token
        created or revoked from the command line takes effect without a restart."""
        digest = token_digest(token)
        found = None
        for name, rec in self.tokens().items():
            if hmac.compare_digest(digest, rec["sha256"]):
                found = name
        return found
