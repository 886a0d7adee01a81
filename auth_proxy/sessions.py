"""Browser sessions, kept server-side so that logout, a password change and an account
disabled revoke them.

The cookie carries only a random id. The proxy keeps each session under the sha256 of that
id, with its account and the account's password generation, in the accounts' database
(auth_proxy/accounts_sql.py), so a restart of the proxy or the container does not log
browsers out, every gateway replica sees the same sessions, and a copy of the database holds
nothing a browser could present. A session ends when it expires, at logout, when its
account's password changes (the generation no longer matches), and when the account is
disabled or deleted.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from dataclasses import dataclass

from auth_proxy.accounts import Account, Accounts

COOKIE = "comfy_session"
log = logging.getLogger(__name__)
SWEEP_EVERY_S = 600.0  # expired sessions are removed this often


@dataclass
class Session:
    account: Account
    key: str
    expires: float


def _key(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class Sessions:
    def __init__(self, lifetime_s: float, accounts: Accounts):
        self.lifetime_s = lifetime_s
        self.accounts = accounts
        self._swept = 0.0
        self._expire()

    def create(self, account: Account) -> str:
        self._expire()
        sid = secrets.token_urlsafe(32)
        self.accounts.rows.put_session(
            _key(sid), account.name, account.generation, time.time() + self.lifetime_s
        )
        return sid

    def get(self, sid: str | None) -> Session | None:
        """The live session of this cookie id, or None (and a dead one is removed)."""
        if not sid:
            return None
        key = _key(sid)
        row = self.accounts.rows.session(key)
        if row is None:
            return None
        account = self.accounts.account(row["owner"])
        if account is not None and account.generation != row["generation"]:
            # Maybe a password changed a moment ago in another process: look again.
            account = self.accounts.account(row["owner"], fresh=True)
        if (
            row["expires"] < time.time()
            or account is None
            or account.disabled
            or account.generation != row["generation"]
        ):
            self.accounts.rows.drop_session(key)
            return None
        return Session(account, key, row["expires"])

    def alive(self, key: str) -> bool:
        """Whether the session stored under `key` still holds (for open WebSockets)."""
        row = self.accounts.rows.session(key)
        if row is None or row["expires"] < time.time():
            return False
        account = self.accounts.account(row["owner"])
        return account is not None and not account.disabled and account.generation == row["generation"]

    def drop(self, sid: str | None) -> None:
        if sid:
            self.accounts.rows.drop_session(_key(sid))

    def _expire(self) -> None:
        now = time.time()
        if now - self._swept > SWEEP_EVERY_S:
            self._swept = now
            self.accounts.rows.drop_sessions(expired_before=now)


def session_key(sid: str) -> str:
    return _key(sid)
