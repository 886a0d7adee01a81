"""The ways in: a session cookie, HTTP Basic, a Bearer token, or `?token=` on the
WebSocket only; and the password check they share with the login form, behind the
failed-login limits."""

from __future__ import annotations

import base64
import ipaddress
import logging

from aiohttp import web

from auth_proxy.accounts import token_digest
from auth_proxy.replies import error
from auth_proxy.services import GATE, Gate, Who
from auth_proxy.sessions import COOKIE

log = logging.getLogger(__name__)
WS_PATHS = ("/ws", "/api/ws")


def by_token(gate: Gate, token: str, via: str) -> Who | web.Response:
    # Tokens are ASCII; a header holding other bytes arrives as undecodable text.
    name = gate.store.find_token(token.strip()) if token.isascii() else None
    if name is None:
        gate.metrics.login_failures += 1
        return error(401, "unknown or revoked API token")
    return Who(f"token:{name}", via, token_digest=token_digest(token.strip()))


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
        except ValueError:  # not base64, not ASCII, or not UTF-8 inside
            return error(401, "malformed Basic credentials")
        return await check_login(request, user, password, "basic")
    if norm in WS_PATHS and request.query.get("token"):
        return by_token(gate, request.query["token"], "query-token")
    sid = request.cookies.get(COOKIE)
    session = gate.sessions.get(sid, gate.admin.generation)
    if session:
        return Who(session.user, "cookie", sid, generation=session.generation)
    return None


def client_key(address: str | None) -> str:
    """The limiter's key for a client: its address, or its /64 for IPv6, since one host
    commonly holds a whole /64 and could otherwise take a fresh address per guess."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return f"ip:{address}"
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return f"ip:{ip.ipv4_mapped}"
        return f"ip:{ipaddress.ip_network((ip, 64), strict=False)}"
    return f"ip:{ip}"


def busy(message: str, seconds: int) -> web.Response:
    return error(429, message, **{"Retry-After": str(seconds)})


async def check_login(request: web.Request, user: str, password: str, via: str) -> Who | web.Response:
    gate = request.config_dict[GATE]
    known = gate.verified.key(gate.admin.generation, user, password) if via == "basic" else None
    if known and gate.verified.known(known):
        # Remembered: no check, so no limit either; a flood of wrong guesses elsewhere
        # must not stop a script that already proved its password.
        return Who(gate.admin.user, via, generation=gate.admin.generation)
    client = client_key(request.remote)
    keys = [client]
    if user.lower() == gate.admin.user.lower():
        keys.append(f"user:{user.lower()}")
    wait = gate.limiter.retry_after(keys)
    if wait > 0:
        secs = int(wait) + 1
        return busy(f"too many failed logins; try again in {secs} s", secs)
    if gate.pending_logins >= gate.s.max_pending_logins:
        return busy("too many logins are being checked right now; try again in a second", 1)
    if not gate.limiter.begin([client]):
        return busy("a login from this client is being checked; wait for its answer", 1)
    # Counted before the check, so that attempts made while it runs see it; a success
    # clears it again.
    gate.limiter.failed(keys)
    gate.pending_logins += 1
    try:
        ok = await gate.in_argon2_pool(gate.store.check_password, gate.admin, user, password)
    finally:
        gate.pending_logins -= 1
        gate.limiter.end([client])
    if not ok:
        gate.limiter.confirm(keys)
        gate.metrics.login_failures += 1
        log.warning("failed login from %s", request.remote)
        return error(401, "wrong user name or password")
    gate.limiter.succeeded(keys)
    if known:
        gate.verified.add(known)
    return Who(gate.admin.user, via, generation=gate.admin.generation)
