"""The gate, one concern per middleware, applied to every route in this order (see
auth_proxy/app.py): hide errors, normalise, authenticate, CSRF, forced password change.

Each middleware reads what the earlier ones left on the request (`NORM_PATH`, `WHO`) and
the route's access level from auth_proxy/routes.py.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import quote, unquote_plus

from aiohttp import web

from auth_proxy import pages
from auth_proxy.credentials import identify
from auth_proxy.forwarded import arrival, host_allowed
from auth_proxy.metrics import route_group
from auth_proxy.origins import fetch_site, safe_next, same_origin
from auth_proxy.paths import BadPath
from auth_proxy.paths import normalise as normalise_path
from auth_proxy.replies import challenge, error, html, lang, wants_json
from auth_proxy.routes import Access, access_of, is_open_path
from auth_proxy.services import ARRIVAL, GATE, NORM_PATH, WHO
from auth_proxy.v2.envelope import v2_envelope

log = logging.getLogger(__name__)
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# The pages of ComfyUI's front end that a link from another site may open.
UI_PAGES = {"/"}
MUST_CHANGE_MSG = (
    "this account's password is still the default or one the admin set: log in at /login "
    "in a browser and set a new one (for the admin, COMFY_ADMIN_PASSWORD works too) before using the API"
)


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
async def normalise(request: web.Request, handler):
    """What every later decision is made on: the path percent-decoded with dot segments
    resolved, the client's address, and the host it asked for (which must be ours)."""
    if not request.raw_path.startswith("/"):
        # An absolute-form target (`GET http://host/x`), CONNECT's host:port or OPTIONS's
        # `*`: this is no forward proxy, and the relay appends the raw target to ComfyUI's
        # address, which such a target would turn into another URL.
        return error(400, "send the request target as a path (this server is not a forward proxy)")
    try:
        request[NORM_PATH] = normalise_path(request.raw_path.split("?", 1)[0])
    except BadPath:
        return error(400, "malformed path")
    if any(ord(c) < 32 or ord(c) == 127 for c in unquote_plus(request.query_string)):
        # No ComfyUI route takes them; ComfyUI-Manager writes some query values into its
        # config.ini, where a CR starts a line of the attacker's (CVE-2026-22777).
        return error(400, "control characters in the query string")
    seen = arrival(request, request.config_dict[GATE].s.trusted_proxies)
    request[ARRIVAL] = seen  # on the original request too: the access log reads it
    if not host_allowed(seen.host, request.config_dict[GATE].s.allowed_hosts):
        return error(
            421,
            f"this server does not answer to the host name in {seen.host!r}; "
            "if it is yours, add it to AUTH_PROXY_ALLOWED_HOSTS",
        )
    if seen.trusted:
        request = request.clone(remote=seen.client, host=seen.host, scheme=seen.scheme)
    return await handler(request)


@web.middleware
async def authenticate(request: web.Request, handler):
    access = access_of(request)
    if access is Access.OPEN:
        return await handler(request)
    norm = request[NORM_PATH]
    who = await identify(request, norm)
    if isinstance(who, web.StreamResponse):
        return challenge(request, who)
    if who is None:
        if access is Access.ANYONE:
            return await handler(request)
        if wants_json(request):
            return challenge(
                request,
                error(
                    401,
                    "login required: send a session cookie, HTTP Basic or 'Authorization: Bearer <token>'",
                ),
            )
        raise web.HTTPFound(f"/login?next={quote('/' if is_open_path(request, norm) else request.path_qs)}")
    request[WHO] = who
    return await handler(request)


@web.middleware
async def csrf(request: web.Request, handler):
    """Requests carrying credentials that a browser attaches by itself (the session cookie,
    or Basic it remembered) are refused when another site's page made them, unless they are
    a plain page load of the app; cookie writes and WebSockets must name this host.

    The cookie is SameSite=Lax, so a cross-site top-level GET carries it, and a page on the
    same host but another port is same-site and sends it even from an <img>; ComfyUI-Manager
    changes state on GET (/manager/reboot, /snapshot/restore, ...), so checking only writes
    would not do.
    """
    who = request.get(WHO)
    if who is not None and who.via in ("cookie", "basic"):
        if fetch_site(request) in ("cross-site", "same-site") and not ui_page_load(request):
            return cross_site_refused(request)
    if (
        who is not None
        and who.via == "cookie"
        and (request.method not in SAFE_METHODS or request.headers.get("Upgrade", "").lower() == "websocket")
    ):
        if not same_origin(request):
            return error(403, "cross-site request refused: Origin or Referer must match this host")
    return await handler(request)


def ui_page_load(request: web.Request) -> bool:
    """A top-level navigation to the app itself: what a link from elsewhere may open."""
    return (
        request.method in ("GET", "HEAD")
        and request[NORM_PATH] in UI_PAGES
        and request.headers.get("Sec-Fetch-Mode", "navigate") == "navigate"
        and request.headers.get("Sec-Fetch-Dest", "document") == "document"
        and request.headers.get("Upgrade", "").lower() != "websocket"
    )


def cross_site_refused(request: web.Request) -> web.Response:
    if request.headers.get("Sec-Fetch-Mode") == "navigate" or not wants_json(request):
        # A link someone followed: say so, and let them go on from this site if they meant it.
        return html(pages.cross_site_page(lang(request), safe_next(request.path_qs)), status=403)
    return error(403, "refused: another site's page made this request (Sec-Fetch-Site, Origin or Referer)")


@web.middleware
async def forced_change(request: web.Request, handler):
    """While an account's password is the default or one the admin set, nothing but
    changing it (and logging out)."""
    who = request.get(WHO)
    if who is not None and who.must_change and access_of(request) is Access.LOGIN:
        if who.via == "cookie" and not wants_json(request):
            raise web.HTTPFound(f"/_auth/password?next={quote(request.path_qs)}")
        return error(403, MUST_CHANGE_MSG)
    return await handler(request)


# The order is the design: each step trusts what the ones before it established.
PIPELINE = [count_and_hide_errors, v2_envelope, normalise, authenticate, csrf, forced_change]
