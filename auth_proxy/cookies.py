"""The session cookie: made at login, Secure when the client came over HTTPS."""

from __future__ import annotations

from aiohttp import web

from auth_proxy.services import GATE
from auth_proxy.sessions import COOKIE


def secure(request: web.Request) -> bool:
    mode = request.config_dict[GATE].s.secure_cookies
    if mode != "auto":
        return mode == "always"
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def start_session(resp: web.StreamResponse, request: web.Request, user: str) -> web.StreamResponse:
    """A new server-side session for the account `user`, and its cookie on `resp`."""
    gate = request.config_dict[GATE]
    account = gate.accounts.account(user, fresh=True)
    if account is None:  # deleted a moment ago
        raise web.HTTPForbidden(text="this account no longer exists")
    sid = gate.sessions.create(account)
    resp.set_cookie(
        COOKIE,
        sid,
        httponly=True,
        samesite="Lax",
        secure=secure(request),
        path="/",
        max_age=int(gate.sessions.lifetime_s),
    )
    return resp
