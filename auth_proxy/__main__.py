"""`python -m auth_proxy` serves; `python -m auth_proxy token create|list|revoke` manages
API tokens in AUTH_PROXY_STATE_DIR (exit codes in auth_proxy/errors.py)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time

from aiohttp.abc import AbstractAccessLogger

from auth_proxy import logs
from auth_proxy.accounts import Store
from auth_proxy.accounts_sql import backend_for
from auth_proxy.app import ARRIVAL, NORM_PATH, create_app
from auth_proxy.errors import AuthProxyError
from auth_proxy.server import serve
from auth_proxy.settings import load_settings

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
    tok = sub.add_parser("token", help="manage API tokens")
    tsub = tok.add_subparsers(dest="action", required=True)
    tsub.add_parser("create", help="create a token and print it (once)").add_argument("name")
    tsub.add_parser("list", help="list token names and creation dates")
    tsub.add_parser("revoke", help="revoke a token").add_argument("name")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logs.configure()
    try:
        settings = load_settings()
        if args.command == "token":
            store = Store(
                settings.state_dir, backend_for(settings.jobs.database_url if settings.jobs else "")
            )
            if args.action == "create":
                token = store.create_token(args.name)
                print(
                    f"created token {args.name!r}; it is shown only now. Send it as "
                    f"'Authorization: Bearer <token>':",
                    file=sys.stderr,
                )
                print(token)
            elif args.action == "list":
                for name, rec in sorted(store.tokens().items()):
                    print(f"{name}\t{time.strftime('%Y-%m-%d %H:%M', time.gmtime(rec['created']))} UTC")
            else:
                store.revoke_token(args.name)
                print(f"revoked token {args.name!r}")
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
