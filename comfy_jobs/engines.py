"""Database engines for the ledger: SQLite on the data volume (one box) and PostgreSQL
(a cluster: every gateway and worker shares it).

Three kinds of write, each as durable as the contract needs and no more:
  DURABLE  a job answered 201, a terminal state, a cancel: fsynced before the call returns
           (SQLite synchronous=FULL; PostgreSQL's default synchronous_commit=on);
  ORDERED  a claim, an attempt: survive the process being killed (SQLite WAL with
           synchronous=NORMAL); on PostgreSQL also fsynced, because there a database failover
           must not hand a running job to a second worker;
  LIGHT    heartbeats, progress, a worker's report, an output committed while the run goes:
           PostgreSQL commits them without waiting for the WAL flush (`SET LOCAL
           synchronous_commit = off`: a crash of the database loses at most the last fraction
           of a second of them, never reorders them, and the next synchronous commit, such as
           the job's end, flushes them; a lost output is fetched again from ComfyUI's history).
"""

from __future__ import annotations

import enum
import logging
import threading
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url

log = logging.getLogger(__name__)
CHANNEL = "comfy_jobs"  # NOTIFY channel: "a job may be claimable now"


class Write(enum.Enum):
    DURABLE = "durable"
    ORDERED = "ordered"
    LIGHT = "light"


def normalise(url: str) -> URL:
    """postgres:// and postgresql:// go through psycopg 3 (the driver we ship), not
    SQLAlchemy's default psycopg2."""
    u = make_url(url)
    if u.drivername in ("postgres", "postgresql"):
        u = u.set(drivername="postgresql+psycopg")
    return u


def sqlite_engine(url: URL, immediate: bool, synchronous: str = "NORMAL") -> Engine:
    path = url.database
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA busy_timeout=15000")  # another process (a worker) may be writing
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        # Writers take the lock up front: a deferred transaction that reads and then writes
        # can fail with SQLITE_BUSY instead of waiting when two processes race.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def postgres_engine(url: URL, pool_size: int, **kw) -> Engine:
    # pre_ping: a gateway outlives database failovers (RDS switches its primary) without
    # handing out a dead connection.
    return create_engine(
        url, pool_size=pool_size, max_overflow=2, pool_pre_ping=True, pool_recycle=1800, **kw
    )


def light(c: Connection) -> None:
    """Inside a PostgreSQL transaction: commit it without waiting for the WAL flush."""
    c.execute(text("SET LOCAL synchronous_commit = off"))


def notify(c: Connection) -> None:
    """Wake every listening worker when this transaction commits."""
    c.execute(text(f"NOTIFY {CHANNEL}"))


_OWNER_LOCK = text("SELECT pg_advisory_xact_lock(727140015, hashtext(:owner))")


def owner_lock(c: Connection, owner: str) -> None:
    """Until this transaction ends, no other one takes the same owner's lock: a count of the
    owner's waiting jobs and the insert after it are not raced by another gateway's."""
    c.execute(_OWNER_LOCK, {"owner": owner})


def schema_lock(c: Connection) -> None:
    """Gateways and workers starting at once create the tables one at a time."""
    c.execute(text("SELECT pg_advisory_xact_lock(727140014)"))


class Listener:
    """LISTEN on its own connection, in a thread (psycopg's notifies() blocks), calling
    `wake()` for each NOTIFY; reconnects when the database goes away."""

    def __init__(self, url: URL, wake):
        self.url, self.wake = url, wake
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="ledger-listen", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        import psycopg

        dsn = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not self._stop.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.wake()
            except psycopg.Error as exc:
                log.warning("ledger: listening for new jobs failed (%s); polling until it reconnects", exc)
                self._stop.wait(2.0)
