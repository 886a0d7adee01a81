"""A real PostgreSQL server for the tests: Debian's `initdb`/`pg_ctl` (package `postgresql`),
a cluster in a temp dir on a free loopback port, stopped and removed by `stop()`.

PostgreSQL refuses to run as root; under root (CI) the cluster belongs to the `postgres`
account that Debian's package creates, and the server runs as that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from . import free_port, need, wait_until


def _tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/" + name))  # Debian keeps them here
    return str(versions[-1]) if versions else None


@dataclass
class Postgres:
    root: Path
    port: int
    as_user: list[str]
    pg_ctl: str

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, db: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.admin_url, autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(
            [*self.as_user, self.pg_ctl, "-D", str(self.root / "data"), "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> Postgres:
    initdb, pg_ctl = _tool("initdb"), _tool("pg_ctl")
    need(bool(initdb and pg_ctl), "PostgreSQL is not installed (Debian: apt-get install postgresql)")
    assert initdb and pg_ctl
    root = Path(tempfile.mkdtemp(prefix="comfy-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()
    try:
        subprocess.run(
            [
                *as_user,
                initdb,
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-instructions",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        # Loopback only, its socket in its own folder; fsync stays on (the ledger's durability
        # is part of what the suite checks).
        opts = (
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} "
            "-c max_connections=200 -c shared_buffers=32MB"
        )
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "server.log"), "-w", "start"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        pg = Postgres(root, port, as_user, pg_ctl)
        import psycopg

        wait_until(
            lambda: psycopg.connect(pg.admin_url, connect_timeout=2).close() or True,
            timeout=30,
            what="PostgreSQL",
        )
        return pg
    except BaseException:
        log = (root / "server.log").read_text(errors="replace") if (root / "server.log").exists() else ""
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
        if log:
            print(log[-4000:])
        raise
