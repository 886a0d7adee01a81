"""The gate's account, tokens and browser sessions in the cluster's database
(COMFY_JOBS_DATABASE_URL, beside the job ledger), so that N gateway replicas are one gate:
a token created or revoked, a password changed, a logout, on any replica, holds on all.

Each call is one short statement on an indexed row, made where the gate needs it (its checks
are synchronous); the token list is read at most once a second (so a revocation reaches every
replica within a second) and a session on every request that presents its cookie.
"""

from __future__ import annotations

import time

from sqlalchemy import JSON, Column, Float, Integer, MetaData, String, Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from auth_proxy.errors import StateError
from comfy_jobs import engines

TOKENS_FOR_S = 1.0
meta = MetaData()
admin_t = Table(
    "auth_admin", meta, Column("id", Integer, primary_key=True), Column("data", JSON, nullable=False)
)
tokens_t = Table(
    "auth_tokens", meta, Column("name", String(200), primary_key=True), Column("data", JSON, nullable=False)
)
sessions_t = Table(
    "auth_sessions",
    meta,
    Column("key", String(64), primary_key=True),
    Column("data", JSON, nullable=False),
    Column("expires", Float, nullable=False, index=True),
)


class SqlBackend:
    shared = True

    def __init__(self, url: str):
        u = engines.normalise(url)
        self.where = u.render_as_string()
        try:
            if u.get_backend_name() == "postgresql":
                self.engine = engines.postgres_engine(u, pool_size=4, connect_args={"connect_timeout": 5})
            else:
                self.engine = engines.sqlite_engine(u, True, "FULL")
            with self.engine.begin() as c:
                if u.get_backend_name() == "postgresql":
                    engines.schema_lock(c)
                meta.create_all(c)
        except SQLAlchemyError as exc:
            raise StateError(
                f"cannot open the gate's state in {self.where}: {exc}; check COMFY_JOBS_DATABASE_URL"
            ) from None
        self._tokens: tuple[float, dict[str, dict]] = (0.0, {})

    def _do(self, fn):
        try:
            with self.engine.begin() as c:
                return fn(c)
        except IntegrityError:
            raise
        except SQLAlchemyError as exc:
            raise StateError(f"the gate's state in {self.where} is not answering: {exc}") from None

    def load_admin(self) -> dict | None:
        return self._do(lambda c: c.execute(select(admin_t.c.data).where(admin_t.c.id == 1)).scalar())

    def save_admin(self, data: dict) -> None:
        def run(c):
            if not c.execute(update(admin_t).where(admin_t.c.id == 1).values(data=data)).rowcount:
                c.execute(insert(admin_t).values(id=1, data=data))

        self._do(run)

    def tokens(self) -> dict[str, dict]:
        if time.monotonic() - self._tokens[0] > TOKENS_FOR_S:
            rows = self._do(lambda c: c.execute(select(tokens_t.c.name, tokens_t.c.data)).all())
            self._tokens = (time.monotonic(), {name: data for name, data in rows})
        return dict(self._tokens[1])

    def add_token(self, name: str, record: dict) -> bool:
        try:
            self._do(lambda c: c.execute(insert(tokens_t).values(name=name, data=record)))
        except IntegrityError:
            return False
        self._tokens = (0.0, {})
        return True

    def drop_token(self, name: str) -> bool:
        n = self._do(lambda c: c.execute(delete(tokens_t).where(tokens_t.c.name == name)).rowcount)
        self._tokens = (0.0, {})
        return bool(n)

    def session(self, key: str) -> dict | None:
        return self._do(
            lambda c: c.execute(select(sessions_t.c.data).where(sessions_t.c.key == key)).scalar()
        )

    def put_session(self, key: str, record: dict) -> None:
        self._do(
            lambda c: c.execute(insert(sessions_t).values(key=key, data=record, expires=record["expires"]))
        )

    def drop_session(self, key: str) -> None:
        self._do(lambda c: c.execute(delete(sessions_t).where(sessions_t.c.key == key)))

    def drop_sessions(self, expired_before: float | None = None) -> None:
        q = delete(sessions_t)
        if expired_before is not None:
            q = q.where(sessions_t.c.expires < expired_before)
        self._do(lambda c: c.execute(q))


def backend_for(database_url: str):
    """The gate's store: the cluster's database when COMFY_JOBS_DATABASE_URL names one,
    else None (files in AUTH_PROXY_STATE_DIR)."""
    return SqlBackend(database_url) if database_url else None
