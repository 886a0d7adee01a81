"""`python -m auth_proxy` serves; `python -m auth_proxy user add|list|disable|enable|delete|
reset|role|limit` manages accounts, `token create|list|revoke` API tokens and `audit` reads
the audit log (exit codes in auth_proxy/errors.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path

from aiohttp.abc import AbstractAccessLogger

from auth_proxy import logs
from auth_proxy.accounts import ROLES, accounts_url, open_accounts
from auth_proxy.app import ARRIVAL, NORM_PATH, create_app
from auth_proxy.audit import AuditLog
from auth_proxy.errors import AccountError, AuthProxyError, ConfigError, StateError
from auth_proxy.server import serve
from auth_proxy.settings import load_settings
from comfy_stack import variables as v
from comfy_stack.env import Env

log = logging.getLogger("auth_proxy")


class AccessLogger(AbstractAccessLogger):
    """Logs the client (behind a trusted proxy, the forwarded one) and the normalised path
    only: the query string may hold `?token=`, and headers (Authorization, Cookie) are
    never logged."""

    def log(self, request, response, time_taken):  # noqa: A003 - aiohttp's interface
        seen = request.get(ARRIVAL)
        self.logger.info(
            "%s %s %s %d %.3fs",
            seen.client if seen else request.remote,
            request.method,
            request.get(NORM_PATH, "-"),
            response.status,
            time_taken,
        )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m auth_proxy", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command")
    sub.add_parser("serve", help="serve (the default)")
    usr = sub.add_parser("user", help="manage accounts (admin and member)")
    usub = usr.add_subparsers(dest="action", required=True)
    add = usub.add_parser(
        "add", help="add an account; prints its first password (to be changed at first login)"
    )
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, default="member")
    add.add_argument("--password-stdin", action="store_true", help="read the first password from stdin")
    usub.add_parser("list", help="list accounts, their role and state")
    for action, text in (
        ("disable", "disable an account: its sessions, tokens and WebSockets end at once"),
        ("enable", "enable a disabled account"),
        ("delete", "delete an account, its sessions and tokens (its jobs and files stay)"),
    ):
        usub.add_parser(action, help=text).add_argument("name")
    reset = usub.add_parser("reset", help="set a new password (printed) to be changed at the next login")
    reset.add_argument("name")
    reset.add_argument("--password-stdin", action="store_true")
    role = usub.add_parser("role", help="change an account's role")
    role.add_argument("name")
    role.add_argument("role", choices=ROLES)
    lim = usub.add_parser("limit", help="waiting jobs this account may have ('default' for the server's)")
    lim.add_argument("name")
    lim.add_argument("limit")
    tok = sub.add_parser("token", help="manage API tokens")
    tsub = tok.add_subparsers(dest="action", required=True)
    for action, text in (
        ("create", "create a token and print it (once)"),
        ("list", "list tokens: owner, name and creation date"),
        ("revoke", "revoke a token"),
    ):
        t = tsub.add_parser(action, help=text)
        if action != "list":
            t.add_argument("name")
        t.add_argument("--user", help="the token's owner (default: COMFY_ADMIN_USER; list: everyone's)")
    aud = sub.add_parser("audit", help="print the newest entries of the audit log")
    aud.add_argument("-n", type=int, default=50)
    return p


def when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t)) + " UTC"


def password_arg(args) -> str | None:
    return sys.stdin.readline().rstrip("\n") if args.password_stdin else None


def manage_users(accounts, args, audit_log: AuditLog) -> None:
    name = args.name if args.action != "list" else None
    if args.action == "add":
        password = accounts.add(args.name, args.role, password_arg(args))
        print(
            f"added {args.role} {args.name!r}; first password (to be changed at first login):",
            file=sys.stderr,
        )
        print(password)
    elif args.action == "list":
        for a in accounts.accounts():
            state = "disabled" if a.disabled else ("must change password" if a.must_change else "active")
            limit = "default" if a.max_waiting is None else a.max_waiting
            print(f"{a.name}\t{a.role}\t{state}\twaiting limit {limit}\tsince {when(a.created)}")
    elif args.action in ("disable", "enable"):
        accounts.set_disabled(args.name, args.action == "disable")
        print(f"{args.action}d {args.name!r}")
    elif args.action == "delete":
        accounts.delete(args.name)
        print(f"deleted {args.name!r}")
    elif args.action == "reset":
        password = accounts.reset_password(args.name, password_arg(args))
        print(f"new password for {args.name!r} (to be changed at the next login):", file=sys.stderr)
        print(password)
    elif args.action == "role":
        accounts.set_role(args.name, args.role)
        print(f"{args.name!r} is now {args.role}")
    elif args.action == "limit":
        if args.limit == "default":
            limit = None
        else:
            try:
                limit = int(args.limit)
            except ValueError:
                raise AccountError(f"limit {args.limit!r}: a number of jobs, or 'default'") from None
        accounts.set_max_waiting(args.name, limit)
        print(f"{args.name!r} may have {'the default number of' if limit is None else limit} waiting jobs")
    audit_log.write(f"user-{args.action}", by="command line", user=name, role=getattr(args, "role", None))


def manage_tokens(accounts, args, audit_log: AuditLog) -> None:
    if args.action == "create":
        token = accounts.create_token(args.name, args.user)
        print(
            f"created token {args.name!r}; it is shown only now. Send it as 'Authorization: Bearer <token>':",
            file=sys.stderr,
        )
        print(token)
    elif args.action == "list":
        for t in accounts.tokens(args.user):
            print(f"{t.owner}\t{t.name}\t{when(t.created)}")
        return
    else:
        accounts.revoke_token(args.name, args.user)
        print(f"revoked token {args.name!r}")
    audit_log.write(
        f"token-{args.action}", by="command line", user=args.user or accounts.admin_user, token=args.name
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logs.configure()
    try:
        settings = load_settings()
        if args.command in ("user", "token", "audit"):
            audit_log = AuditLog(settings.state_dir)
            if args.command == "audit":
                for entry in reversed(audit_log.tail(args.n)):
                    print(json.dumps(entry, ensure_ascii=False))
                return 0
            url = accounts_url(settings)
            env = Env(error=ConfigError)
            named = env.is_set(v.COMFY_JOBS_DIR) or env.is_set(v.COMFY_JOBS_DATABASE_URL)
            if (
                not named
                and url.startswith("sqlite:///")
                and not Path(url.removeprefix("sqlite:///")).exists()
            ):
                # Run on the defaults where the server was given other settings, a management
                # command would make an empty database of its own and change nothing the server
                # sees; settings named on purpose are trusted (a first token before the first start).
                raise StateError(
                    f"no accounts database at {url.removeprefix('sqlite:///')}: run this with the "
                    "server's settings (in the container: docker compose exec comfyui ...; with "
                    "comfyctl serve: COMFY_JOBS_DIR=<data>/jobs AUTH_PROXY_STATE_DIR=<data>/auth), "
                    "after its first start"
                )
            accounts = open_accounts(settings)
            try:
                (manage_users if args.command == "user" else manage_tokens)(accounts, args, audit_log)
            finally:
                accounts.close()
                audit_log.close()
            return 0
        app = create_app(settings)
        asyncio.run(
            serve(
                app,
                settings,
                access_log_class=AccessLogger,
                access_log=logging.getLogger("auth_proxy.access"),
            )
        )
        return 0
    except AuthProxyError as exc:
        print(f"auth_proxy: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
