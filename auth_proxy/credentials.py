"""The ways in: a session cookie, HTTP Basic, a Bearer token, or `?token=` on the
WebSocket only; and the password check they share with the login form, behind the
failed-login limits."""

from __future__ import annotations

import base64
import ipaddress
import logging

from aiohttp import web

from auth_proxy import audit
from auth_proxy.accounts import Account
from auth_proxy.replies import error
from auth_proxy.services import GATE, Gate, Who
from auth_proxy.sessions import COOKIE

log = logging.getLogger(__name__)
WS_PATHS = ("/ws", "/api/ws")


def who_of(account: Account, via: str, **kw) -> Who:
    return Who(
        account.name,
        via,
        generation=account.generation,
        role=account.role,
        must_change=account.must_change,
        **kw,
    )


def by_token(gate: Gate, token: str, via: str) -> Who | web.Response:
    # Tokens are ASCII; a header holding other bytes arrives as undecodable text.
    found = gate.accounts.find_token(token.strip()) if token.isascii() else None
    if found is None:
        gate.metrics.login_failures += 1
        return error(401, "unknown or revoked API token")
    tok, account = found
    return who_of(account, via, token_digest=tok.digest, token=tok.name)


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
    session = gate.sessions.get(sid)
    if session:
        return who_of(session.account, "cookie", sid=sid)
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
    account = gate.accounts.account(user)
    known = gate.verified.key(account.generation, user, password) if via == "basic" and account else None
    if known and gate.verified.known(known) and account and not account.disabled:
        # Remembered: no check, so no limit either; a flood of wrong guesses elsewhere
        # must not stop a script that already proved its password.
        return who_of(account, via)
    client = client_key(request.remote)
    keys = [client]
    if account is not None:
        # Only names that exist get a per-name allowance: guessing names fills no table.
        keys.append(f"user:{user}")
    wait = gate.limiter.retry_after(keys)
    if wait > 0:
        secs = int(wait) + 1
        return busy(f"too many failed logins; try again in {secs} s", secs)
    if gate.pending_logins >= gate.s.max_pending_logins:
        return busy("too many logins are being checked right now; try again in a second", 1)
    # One check at a time per client and name: a client cannot fill the argon2 pool with
    # parallel guesses at one name, while people behind one address (a lab's NAT) log in at once.
    checking = [f"{client}|{user}"]
    if not gate.limiter.begin(checking):
        return busy("a login from this client is being checked; wait for its answer", 1)
    # Counted before the check, so that attempts made while it runs see it; a success
    # clears it again.
    gate.limiter.failed(keys)
    gate.pending_logins += 1
    try:
        checked = await gate.in_argon2_pool(gate.accounts.check_password, user, password)
    finally:
        gate.pending_logins -= 1
        gate.limiter.end(checking)
    if checked is None:
        gate.limiter.confirm(keys)
        gate.metrics.login_failures += 1
        log.warning("failed login from %s", request.remote)
        audit.record(gate, "login-failed", user=user, client=request.remote, via=via)
        return error(401, "wrong user name or password")
    gate.limiter.succeeded(keys)
    audit.record(gate, "login", user=checked.name, client=request.remote, via=via)
    if via == "basic":
        gate.verified.add(gate.verified.key(checked.generation, user, password))
    return who_of(checked, via)
