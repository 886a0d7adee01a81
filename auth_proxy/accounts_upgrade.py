"""Taking in what an installation from before accounts kept, so that it upgrades with no
step: the admin stays admin with its password, and its tokens and browser sessions keep
working.

Before, one box kept admin.json, tokens.json and sessions.json in AUTH_PROXY_STATE_DIR, and a
cluster the tables auth_admin, auth_tokens and auth_sessions. They are read once, when the
accounts table is still empty; the files are then renamed `*.imported` (kept, so nothing is
lost, and never read again: a later restore of an old file must not bring back an old
password). The old tables are left as they are.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from sqlalchemy import inspect, text

from auth_proxy.accounts_sql import AccountRows, accounts_t, sessions_t, tokens_t

log = logging.getLogger(__name__)
FILES = ("admin.json", "tokens.json", "sessions.json")


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("not taking in %s (%s)", path, exc)
        return {}


def _legacy_tables(rows: AccountRows) -> tuple[dict, dict, dict] | None:
    def run(c):
        names = set(inspect(c).get_table_names())
        if "auth_admin" not in names:
            return None
        admin = c.execute(text("SELECT data FROM auth_admin WHERE id = 1")).scalar()
        tokens = (
            dict(c.execute(text("SELECT name, data FROM auth_tokens")).all())
            if "auth_tokens" in names
            else {}
        )
        sessions = (
            dict(c.execute(text("SELECT key, data FROM auth_sessions")).all())
            if "auth_sessions" in names
            else {}
        )
        return admin, tokens, sessions

    found = rows.do(run)
    if found is None or found[0] is None:
        return None
    admin, tokens, sessions = found
    return (json.loads(admin) if isinstance(admin, str) else admin), _jsons(tokens), _jsons(sessions)


def _jsons(d: dict) -> dict:
    return {k: (json.loads(v) if isinstance(v, str) else v) for k, v in d.items()}


def import_legacy(rows: AccountRows, state_dir: Path) -> None:
    if rows.do(lambda c: c.execute(accounts_t.select().limit(1)).first()) is not None:
        return
    found = _legacy_tables(rows)
    source = "the tables auth_admin, auth_tokens and auth_sessions"
    if found is None:
        admin = _read(state_dir / FILES[0])
        if not admin:
            return
        found = (
            admin,
            _read(state_dir / FILES[1]).get("tokens", {}),
            _read(state_dir / FILES[2]).get("sessions", {}),
        )
        source = f"{state_dir}/{{{','.join(FILES)}}}"
    admin, tokens, sessions = found
    name = admin["user"]
    now = time.time()

    def run(c):
        c.execute(
            accounts_t.insert().values(
                name=name,
                role="admin",
                password_hash=admin["password_hash"],
                must_change=bool(admin["must_change"]),
                generation=int(admin.get("generation", 1)),
                disabled=False,
                created=now,
                max_waiting=None,
            )
        )
        for token_name, rec in tokens.items():
            c.execute(
                tokens_t.insert().values(
                    digest=rec["sha256"], owner=name, name=token_name, created=float(rec.get("created", now))
                )
            )
        for key, rec in sessions.items():
            if rec.get("expires", 0) > now and rec.get("user") == name:
                c.execute(
                    sessions_t.insert().values(
                        key=key, owner=name, generation=int(rec.get("generation", 1)), expires=rec["expires"]
                    )
                )

    rows.do(run)
    log.info("took in the admin account %r, %d token(s) and its sessions from %s", name, len(tokens), source)
    for f in FILES:
        path = state_dir / f
        if path.exists():
            path.rename(path.with_name(f + ".imported"))
