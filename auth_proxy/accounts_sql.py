"""The accounts' tables, in the database the job ledger uses (COMFY_JOBS_DATABASE_URL, or
SQLite beside the ledger on one box): the people who may log in, their API tokens and their
browser sessions. Every gateway replica reads the same rows, so an account disabled, a
token revoked, a password changed or a logout on one replica holds on all.

Each call is one short statement on an indexed row (the gate's checks are synchronous);
what every request needs (accounts and tokens) is cached by auth_proxy/accounts.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from auth_proxy.errors import StateError
from comfy_jobs import engines

T = TypeVar("T")
meta = MetaData()
accounts_t = Table(
    "accounts",
    meta,
    Column("name", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("must_change", Boolean, nullable=False),
    Column("generation", Integer, nullable=False),  # bumped by every password change
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created", Float, nullable=False),
    Column("max_waiting", Integer, nullable=True),  # waiting jobs allowed; NULL: the default
)
tokens_t = Table(
    "account_tokens",
    meta,
    Column("digest", String(64), primary_key=True),  # sha256 of the token
    Column("owner", String(64), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("created", Float, nullable=False),
    UniqueConstraint("owner", "name", name="account_tokens_owner_name"),
)
sessions_t = Table(
    "account_sessions",
    meta,
    Column("key", String(64), primary_key=True),  # sha256 of the cookie's id
    Column("owner", String(64), nullable=False, index=True),
    Column("generation", Integer, nullable=False),
    Column("expires", Float, nullable=False, index=True),
)
COLUMNS = [c.name for c in accounts_t.columns]


class AccountRows:
    """The three tables, row by row. Raises StateError when the database does not answer,
    IntegrityError when a name is taken."""

    def __init__(self, url: str):
        u = engines.normalise(url)
        self.where = u.render_as_string()
        self.postgres = u.get_backend_name() == "postgresql"
        try:
            if self.postgres:
                self.engine: Engine = engines.postgres_engine(
                    u, pool_size=4, connect_args={"connect_timeout": 5}
                )
            else:
                self.engine = engines.sqlite_engine(u, True, "FULL")
                private_file(u.database)
            with self.engine.begin() as c:
                if self.postgres:
                    engines.schema_lock(c)
                meta.create_all(c)
        except SQLAlchemyError as exc:
            raise StateError(
                f"cannot open the accounts in {self.where}: {exc}; check COMFY_JOBS_DATABASE_URL"
            ) from None

    def do(self, fn: Callable[[Connection], T]) -> T:
        try:
            with self.engine.begin() as c:
                return fn(c)
        except IntegrityError:
            raise
        except SQLAlchemyError as exc:
            raise StateError(f"the accounts in {self.where} are not answering: {exc}") from None

    # --- accounts ----------------------------------------------------------------------
    def accounts(self) -> list[dict]:
        return [dict(r._mapping) for r in self.do(lambda c: c.execute(select(accounts_t)).all())]

    def add_account(self, row: dict) -> bool:
        try:
            self.do(lambda c: c.execute(insert(accounts_t).values(**row)))
        except IntegrityError:
            return False
        return True

    def update_account(self, name: str, **values) -> bool:
        return bool(
            self.do(
                lambda c: (
                    c.execute(update(accounts_t).where(accounts_t.c.name == name).values(**values)).rowcount
                )
            )
        )

    def end_access(self, name: str, delete_account: bool = False) -> bool:
        """Drop every session and token of `name` (and the account itself), in one
        transaction; False when no such account."""

        def run(c: Connection) -> bool:
            found = c.execute(select(accounts_t.c.name).where(accounts_t.c.name == name)).first()
            c.execute(delete(tokens_t).where(tokens_t.c.owner == name))
            c.execute(delete(sessions_t).where(sessions_t.c.owner == name))
            if delete_account:
                c.execute(delete(accounts_t).where(accounts_t.c.name == name))
            return found is not None

        return self.do(run)

    # --- tokens ------------------------------------------------------------------------
    def tokens(self) -> list[dict]:
        return [dict(r._mapping) for r in self.do(lambda c: c.execute(select(tokens_t)).all())]

    def add_token(self, digest: str, owner: str, name: str, created: float) -> bool:
        try:
            self.do(
                lambda c: c.execute(
                    insert(tokens_t).values(digest=digest, owner=owner, name=name, created=created)
                )
            )
        except IntegrityError:
            return False
        return True

    def drop_token(self, owner: str, name: str) -> bool:
        return bool(
            self.do(
                lambda c: (
                    c.execute(
                        delete(tokens_t).where(tokens_t.c.owner == owner, tokens_t.c.name == name)
                    ).rowcount
                )
            )
        )

    # --- sessions ----------------------------------------------------------------------
    def session(self, key: str) -> dict | None:
        row = self.do(lambda c: c.execute(select(sessions_t).where(sessions_t.c.key == key)).first())
        return dict(row._mapping) if row else None

    def put_session(self, key: str, owner: str, generation: int, expires: float) -> None:
        self.do(
            lambda c: c.execute(
                insert(sessions_t).values(key=key, owner=owner, generation=generation, expires=expires)
            )
        )

    def drop_session(self, key: str) -> None:
        self.do(lambda c: c.execute(delete(sessions_t).where(sessions_t.c.key == key)))

    def drop_sessions(self, owner: str | None = None, expired_before: float | None = None) -> None:
        q = delete(sessions_t)
        if owner is not None:
            q = q.where(sessions_t.c.owner == owner)
        if expired_before is not None:
            q = q.where(sessions_t.c.expires < expired_before)
        self.do(lambda c: c.execute(q))

    def close(self) -> None:
        self.engine.dispose()


def private_file(database: str | None) -> None:
    """The SQLite file holds password hashes: readable by its owner only (SQLite gives its
    -wal and -shm files the database file's permissions)."""
    if not database or database == ":memory:":
        return
    path = Path(database)
    try:
        if not path.exists():
            # Only a file no connection has open is opened (and closed) here: closing any
            # descriptor of a file drops every POSIX lock this process holds on it, and SQLite's
            # locks are those (the ledger may have the same file open in this process).
            path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        elif path.stat().st_mode & 0o077:
            path.chmod(0o600)
    except OSError as exc:
        raise StateError(f"cannot create {path}: {exc.strerror}; check COMFY_JOBS_DIR") from None
