"""The gate, one concern per middleware, applied to every route in this order (see
auth_proxy/app.py): hide errors, normalise, authenticate, CSRF, forced password change.

Each middleware reads what the earlier ones left on the request (`NORM_PATH`, `WHO`) and
the route's access level from auth_proxy/routes.py.
"""
from __future__ import annotations

import asyncio
import logging
from urllib.parse import quote

from aiohttp import web

from auth_proxy.credentials import identify
from auth_proxy.gate import GATE, NORM_PATH, WHO
from auth_proxy.metrics import route_group
from auth_proxy.paths import BadPath, normalise
from auth_proxy.responses import error, same_origin, wants_json
from auth_proxy.routes import Access, access_of, is_open_path

log = logging.getLogger(__name__)
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
MUST_CHANGE_MSG = ("the admin password is still the default: log in at /login in a browser "
                   "and set a new one (or set COMFY_ADMIN_PASSWORD) before using the API")


@web.middleware
async def count_and_hide_errors(request: web.Request, handler):
    gate = request.config_dict[GATE]
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    except web.HTTPException as exc:
        status = exc.status
        raise
    except (ConnectionResetError, asyncio.CancelledError):
        status = 499
        raise
    except Exception:  # noqa: BLE001 - never show a traceback to a client
        log.exception("error while handling %s %s", request.method, request.get(NORM_PATH, "?"))
        return web.json_response({"error": "internal error in the proxy; see its log"}, status=500)
    finally:
        gate.metrics.requests[(route_group(request.get(NORM_PATH, "/")), status)] += 1


@web.middleware
async def normalise_path(request: web.Request, handler):
    """The one path every decision is made on: percent-decoded, dot segments resolved."""
    try:
        request[NORM_PATH] = normalise(request.raw_path.split("?", 1)[0])
    except BadPath:
        return error(400, "malformed path")
    return await handler(request)


@web.middleware
async def authenticate(request: web.Request, handler):
    access = access_of(request)
    if access is Access.OPEN:
        return await handler(request)
    norm = request[NORM_PATH]
    who = await identify(request, norm)
    if isinstance(who, web.StreamResponse):
        return who
    if who is None:
        if access is Access.ANYONE:
            return await handler(request)
        if wants_json(request):
            return error(401, "login required: send a session cookie, HTTP Basic or "
                              "'Authorization: Bearer <token>'")
        raise web.HTTPFound(f"/login?next={quote('/' if is_open_path(request, norm) else request.path_qs)}")
    request[WHO] = who
    return await handler(request)


@web.middleware
async def csrf(request: web.Request, handler):
    """Cookie-authenticated writes and WebSockets must come from a page of this host."""
    who = request.get(WHO)
    if who is not None and who.via == "cookie" and (
            request.method not in SAFE_METHODS or request.headers.get("Upgrade", "").lower() == "websocket"):
        if not same_origin(request):
            return error(403, "cross-site request refused: Origin or Referer must match this host")
    return await handler(request)


@web.middleware
async def forced_change(request: web.Request, handler):
    """While the default password is in use, nothing but changing it (and logging out)."""
    if request.config_dict[GATE].admin.must_change and access_of(request) is Access.LOGIN:
        who = request[WHO]
        if who.via == "cookie" and not wants_json(request):
            raise web.HTTPFound(f"/_auth/password?next={quote(request.path_qs)}")
        return error(403, MUST_CHANGE_MSG)
    return await handler(request)


# The order is the design: each step trusts what the ones before it established.
PIPELINE = [count_and_hide_errors, normalise_path, authenticate, csrf, forced_change]
