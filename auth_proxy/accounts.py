"""The people who may log in: accounts with a role, their passwords, API tokens and browser
sessions, and the rules over them.

Roles: `admin` (everything: accounts, ComfyUI-Manager and node installs, every person's
work) and `member` (runs workflows, sees their own work). The account named by
COMFY_ADMIN_USER is always an admin; COMFY_ADMIN_PASSWORD, when set, is its password.

Everything lives in the job ledger's database (auth_proxy/accounts_sql.py): one SQLite file
on one box, PostgreSQL across a cluster's gateways. The accounts and the tokens are read
at most once per REFRESH_S (a change made by `python -m auth_proxy user ...` in another
process, or on another replica, holds within that); sessions are read on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from auth_proxy import hashing
from auth_proxy.accounts_sql import COLUMNS, AccountRows
from auth_proxy.errors import AccountError, StateError, TokenError

log = logging.getLogger(__name__)
ROLES = ("admin", "member")
DEFAULT_PASSWORD = "admin"
MIN_PASSWORD = 8
REFRESH_S = 1.0
ACCOUNTS_DB = "accounts.db"  # in the state directory, when no job ledger is configured
NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")


@dataclass
class Account:
    name: str
    role: str
    password_hash: str
    must_change: bool  # a password set by the admin (or the default): changed at first login
    generation: int  # bumped on every password change; sessions of older ones are void
    disabled: bool = False
    created: float = 0.0
    max_waiting: int | None = None  # waiting jobs this person may have; None: the default

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def public(self) -> dict:
        """What the admin page and `user list` show (no hash)."""
        return {
            "name": self.name,
            "role": self.role,
            "disabled": self.disabled,
            "must_change": self.must_change,
            "created": int(self.created),
            "max_waiting": self.max_waiting,
        }


@dataclass(frozen=True)
class Token:
    owner: str
    name: str
    digest: str
    created: float


def token_digest(token: str) -> str:
    # Tokens are 256 random bits, so a fast hash is enough (no dictionary to attack) and
    # keeps per-request checks cheap; passwords get argon2.
    return hashlib.sha256(token.encode()).hexdigest()


# An account name is also a folder name (a member's outputs and uploads go in output/<name>/
# and input/<name>/) and a ComfyUI user id: names ComfyUI or its packs already use there are
# not free.
RESERVED = frozenset(
    {
        "3d",
        "audio",
        "checkpoints",
        "clipspace",
        "default",
        "input",
        "output",
        "pasted",
        "temp",
        "video",
        "webcam",
    }
)


def check_name(name: str, new: bool = False) -> str:
    if not NAME.fullmatch(name or ""):
        raise AccountError(
            f"account name {name!r}: use 1-64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    if new and name in RESERVED:
        raise AccountError(f"account name {name!r} is a folder ComfyUI uses; choose another")
    return name


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
    if password == DEFAULT_PASSWORD:
        raise AccountError("choose a password other than the default")


def temporary_password() -> str:
    return secrets.token_urlsafe(12)


class Accounts:
    def __init__(self, url: str, admin_user: str, admin_password: str | None, state_dir: Path | None = None):
        self.rows = AccountRows(url)
        self.admin_user = admin_user
        self._accounts: dict[str, Account] = {}
        self._tokens: dict[str, Token] = {}
        self._read = 0.0
        if state_dir is not None:
            from auth_proxy.accounts_upgrade import import_legacy

            import_legacy(self.rows, state_dir)
        self._ensure_admin(admin_user, admin_password)

    # --- reading -----------------------------------------------------------------------
    def _refresh(self, force: bool = False) -> None:
        if force or time.monotonic() - self._read > REFRESH_S:
            accounts = {r["name"]: Account(**{k: r[k] for k in COLUMNS}) for r in self.rows.accounts()}
            tokens = {
                r["digest"]: Token(r["owner"], r["name"], r["digest"], r["created"])
                for r in self.rows.tokens()
            }
            self._accounts, self._tokens, self._read = accounts, tokens, time.monotonic()

    def account(self, name: str, fresh: bool = False) -> Account | None:
        self._refresh(fresh)
        return self._accounts.get(name)

    def accounts(self) -> list[Account]:
        self._refresh(True)
        return sorted(self._accounts.values(), key=lambda a: a.name)

    def _require(self, name: str) -> Account:
        account = self.account(name, fresh=True)
        if account is None:
            raise AccountError(f"no account named {name!r}; `user list` shows them")
        return account

    # --- changes -----------------------------------------------------------------------
    def _ensure_admin(self, user: str, configured_password: str | None) -> None:
        check_name(user)
        self._refresh(True)
        admin = self._accounts.get(user)
        if admin is None:
            password = configured_password or DEFAULT_PASSWORD
            self._insert(user, "admin", hashing.hash_password(password), configured_password is None)
            return
        changes: dict = {}
        if admin.role != "admin" or admin.disabled:
            # COMFY_ADMIN_USER names the account that can always reach everything.
            changes.update(role="admin", disabled=False)
        if configured_password is not None and not hashing.verify(admin.password_hash, configured_password):
            # The environment is the source of truth when it names a password.
            changes.update(
                password_hash=hashing.hash_password(configured_password),
                must_change=False,
                generation=admin.generation + 1,
            )
        if changes:
            self.rows.update_account(user, **changes)
            self._refresh(True)

    def _insert(self, name: str, role: str, password_hash: str, must_change: bool) -> None:
        row = {
            "name": name,
            "role": role,
            "password_hash": password_hash,
            "must_change": must_change,
            "generation": 1,
            "disabled": False,
            "created": time.time(),
            "max_waiting": None,
        }
        if not self.rows.add_account(row):
            raise AccountError(f"an account named {name!r} exists")
        self._refresh(True)

    def add(self, name: str, role: str = "member", password: str | None = None) -> str:
        """A new account; its password (given, or made up and returned) must be changed at
        the first login."""
        check_name(name, new=True)
        if role not in ROLES:
            raise AccountError(f"role {role!r}: use one of {', '.join(ROLES)}")
        if password is None:
            password = temporary_password()
        elif len(password) < MIN_PASSWORD:
            raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
        self._insert(name, role, hashing.hash_password(password), True)
        return password

    def set_role(self, name: str, role: str) -> None:
        if role not in ROLES:
            raise AccountError(f"role {role!r}: use one of {', '.join(ROLES)}")
        self._require(name)
        if name == self.admin_user and role != "admin":
            raise AccountError(f"{name!r} is COMFY_ADMIN_USER: it stays an admin")
        self.rows.update_account(name, role=role)
        self._refresh(True)

    def set_disabled(self, name: str, disabled: bool) -> None:
        """Disabling ends every session and token of the account at once."""
        self._require(name)
        if disabled and name == self.admin_user:
            raise AccountError(f"{name!r} is COMFY_ADMIN_USER: it cannot be disabled")
        self.rows.update_account(name, disabled=disabled)
        if disabled:
            self.rows.end_access(name)
        self._refresh(True)

    def delete(self, name: str) -> None:
        if name == self.admin_user:
            raise AccountError(f"{name!r} is COMFY_ADMIN_USER: it cannot be deleted")
        if not self.rows.end_access(name, delete_account=True):
            raise AccountError(f"no account named {name!r}; `user list` shows them")
        self._refresh(True)

    def reset_password(self, name: str, password: str | None = None) -> str:
        """A new password set by the admin: every session of the account ends, and the
        person must change it at their next login. Tokens stay."""
        if password is None:
            password = temporary_password()
        elif len(password) < MIN_PASSWORD:
            raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
        self._set_password(name, password, must_change=True)
        return password

    def change_password(self, name: str, new_password: str) -> None:
        """The person's own change: earlier sessions end (the caller starts a new one)."""
        check_new_password(new_password)
        self._set_password(name, new_password, must_change=False)

    def _set_password(self, name: str, password: str, must_change: bool) -> None:
        """A new password generation: every session of the account made before it ends."""
        account = self._require(name)
        self.rows.update_account(
            name,
            password_hash=hashing.hash_password(password),
            must_change=must_change,
            generation=account.generation + 1,
        )
        self.rows.drop_sessions(owner=name)
        self._refresh(True)

    def set_max_waiting(self, name: str, limit: int | None) -> None:
        self._require(name)
        if limit is not None and limit < 0:
            raise AccountError("a limit of waiting jobs is 0 or more (0: none may wait)")
        self.rows.update_account(name, max_waiting=limit)
        self._refresh(True)

    # --- passwords ---------------------------------------------------------------------
    def check_password(self, name: str, password: str) -> Account | None:
        """The account when the password is its own and it may log in. Unknown names cost
        a hash check too, so timing tells nothing about which names exist."""
        account = self.account(name)
        if account is None or account.disabled:
            account = self.account(name, fresh=True)  # added or enabled a moment ago elsewhere
        ok = hashing.verify(account.password_hash if account else hashing.dummy_hash(), password)
        if not ok and account is not None:
            # a password reset or changed a moment ago in another process: check the new one
            latest = self.account(name, fresh=True)
            if latest is not None and latest.password_hash != account.password_hash:
                account, ok = latest, hashing.verify(latest.password_hash, password)
        if not ok or account is None or account.disabled:
            return None
        return account

    # --- tokens ------------------------------------------------------------------------
    def create_token(self, name: str, owner: str | None = None) -> str:
        owner = owner or self.admin_user
        if not TOKEN_NAME.fullmatch(name or ""):
            raise TokenError(f"token name {name!r}: use letters, digits, '-', '_' or '.'")
        account = self.account(owner, fresh=True)
        if account is None or account.disabled:
            raise TokenError(f"no active account named {owner!r}")
        token = "cst_" + secrets.token_urlsafe(32)
        if not self.rows.add_token(token_digest(token), owner, name, time.time()):
            raise TokenError(f"{owner!r} has a token named {name!r}; revoke it first or pick another name")
        self._refresh(True)
        return token

    def revoke_token(self, name: str, owner: str | None = None) -> None:
        owner = owner or self.admin_user
        if not self.rows.drop_token(owner, name):
            raise TokenError(f"{owner!r} has no token named {name!r}; `token list` shows the names")
        self._refresh(True)

    def tokens(self, owner: str | None = None) -> list[Token]:
        """Every token (owner None), or one person's; fresh from the database."""
        self._refresh(True)
        found = [t for t in self._tokens.values() if owner is None or t.owner == owner]
        return sorted(found, key=lambda t: (t.owner, t.name))

    def find_token(self, token: str) -> tuple[Token, Account] | None:
        """The token and its owner's account, or None (unknown, revoked, or its owner
        disabled). A token made a moment ago in another process is found: a miss re-reads."""
        digest = token_digest(token)
        self._refresh()
        found = self._tokens.get(digest)
        if found is None and time.monotonic() - self._read > 0.05:
            self._refresh(True)
            found = self._tokens.get(digest)
        if found is None or not hmac.compare_digest(found.digest, digest):
            return None
        account = self._accounts.get(found.owner)
        if account is None or account.disabled:
            return None
        return found, account

    def token_valid(self, digest: str) -> bool:
        self._refresh()
        found = self._tokens.get(digest)
        account = self._accounts.get(found.owner) if found else None
        return account is not None and not account.disabled

    def close(self) -> None:
        self.rows.close()


def accounts_url(settings) -> str:
    """The database the accounts live in: the job ledger's (COMFY_JOBS_DATABASE_URL, or its
    SQLite file on one box); without job settings (a proxy alone), SQLite in the state
    directory."""
    if settings.jobs is not None:
        return settings.jobs.db_url
    return f"sqlite:///{settings.state_dir / ACCOUNTS_DB}"


def open_accounts(settings) -> Accounts:
    """The accounts, with a first start's admin made and an older installation's files
    (or tables) taken in."""
    private_dir(settings.state_dir)  # the audit log and an older installation's files
    return Accounts(accounts_url(settings), settings.admin_user, settings.admin_password, settings.state_dir)


def private_dir(path: Path) -> None:
    """The state directory, readable by its owner only."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(f"cannot create {path}: {exc.strerror}; check AUTH_PROXY_STATE_DIR") from None
    if path.stat().st_mode & 0o077:
        try:
            path.chmod(0o700)
        except OSError as exc:
            log.warning("cannot make %s private (mode 0700): %s", path, exc.strerror)
