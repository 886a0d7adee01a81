"""The ways in: a session cookie, HTTP Basic, a Bearer token, or `?token=` on the
WebSocket only; and the password check they share with the login form, behind the
failed-login limits."""
from __future__ import annotations

import base64
import binascii
import logging

from aiohttp import web

from auth_proxy.gate import GATE, Gate, Who
from auth_proxy.responses import error
from auth_proxy.sessions import COOKIE

log = logging.getLogger(__name__)
WS_PATHS = ("/ws", "/api/ws")


def by_token(gate: Gate, token: str, via: str) -> Who | web.Response:
    name = gate.store.find_token(token.strip())
    if name is None:
        gate.metrics.login_failures += 1
        return error(401, "unknown or revoked API token")
    return Who(f"token:{name}", via)


async def identify(request: web.Request, norm: str) -> Who | web.Response | None:
    """Who sent the request: a Who, an error response for credentials that are wrong, or
    None when none were sent."""
    gate = request.config_dict[GATE]
    scheme, _, cred = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and cred:
        return by_token(gate, cred, "bearer")
    if scheme.lower() == "basic" and cred:
        try:
            user, _, password = base64.b64decode(cred.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return error(401, "malformed Basic credentials")
        return await check_login(request, user, password, "basic")
    if norm in WS_PATHS and request.query.get("token"):
        return by_token(gate, request.query["token"], "query-token")
    sid = request.cookies.get(COOKIE)
    session = gate.sessions.get(sid, gate.admin.generation)
    if session:
        return Who(session.user, "cookie", sid)
    return None


async def check_login(request: web.Request, user: str, password: str, via: str) -> Who | web.Response:
    gate = request.config_dict[GATE]
    keys = [f"ip:{request.remote}", f"user:{user.lower()}"]
    wait = gate.limiter.retry_after(keys)
    if wait > 0:
        secs = str(int(wait) + 1)
        return error(429, f"too many failed logins; try again in {secs} s", **{"Retry-After": secs})
    known = gate.verified.key(gate.admin.generation, user, password) if via == "basic" else None
    if known and gate.verified.known(known):
        return Who(gate.admin.user, via)
    if not await gate.in_argon2_pool(gate.store.check_password, gate.admin, user, password):
        gate.limiter.failed(keys)
        gate.metrics.login_failures += 1
        log.warning("failed login from %s", request.remote)
        return error(401, "wrong user name or password")
    gate.limiter.succeeded(keys)
    if known:
        gate.verified.add(known)
    return Who(gate.admin.user, via)
