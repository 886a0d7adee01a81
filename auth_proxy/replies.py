"""How the gate answers: JSON errors for programs, pages for browsers, the challenges that
prompt for credentials, and which of the two a request wants."""

from __future__ import annotations

from aiohttp import web

from auth_proxy import pages
from auth_proxy.paths import is_api_path
from auth_proxy.services import NORM_PATH
from auth_proxy.sessions import COOKIE

# What the proxy says in `Server`, on everything it answers: no name of a version.
SERVER_NAME = "comfy-stack"
CHALLENGES = ('Basic realm="ComfyUI", charset="UTF-8"', 'Bearer realm="ComfyUI"')


def error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def challenge(request: web.Request, resp: web.StreamResponse) -> web.StreamResponse:
    """Add the WWW-Authenticate challenges to a 401 for a program: clients driven by them
    (urllib's HTTPBasicAuthHandler) send credentials only after one. Browsers (a cookie,
    or Sec-Fetch-* on every request they make) get none: it would open the browser's own
    password dialog over the app instead of the login page."""
    if resp.status == 401 and COOKIE not in request.cookies and "Sec-Fetch-Site" not in request.headers:
        for value in CHALLENGES:
            resp.headers.add("WWW-Authenticate", value)
    return resp


def see_other(location: str) -> web.Response:
    # A plain response rather than web.HTTPSeeOther: cookies are set on it before returning.
    return web.Response(status=303, headers={"Location": location})


# What a file a user put on the server is answered with, wherever it is served (ComfyUI's
# /view and userdata relayed, v2 asset content): opened as a page it is sandboxed (no
# script, an opaque origin), and never sniffed into another type; as <img>, fetch() or a
# download it works as before.
USER_FILE = {"Content-Security-Policy": "sandbox", "X-Content-Type-Options": "nosniff"}

# The proxy's own pages may be framed by nothing but this origin (no clickjacking of the
# login or password forms).
FRAMING = {"Content-Security-Policy": "frame-ancestors 'self'", "X-Frame-Options": "SAMEORIGIN"}


def html(text: str, status: int = 200, **headers: str) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", headers={**FRAMING, **headers})


def prefers_json(request: web.Request) -> bool:
    """The client's Accept asks for JSON rather than a page."""
    accept = request.headers.get("Accept", "")
    return "json" in accept and "text/html" not in accept


def wants_json(request: web.Request) -> bool:
    """Anything but a browser loading a page gets JSON errors, never a redirect: a page
    load is a GET whose Accept asks for text/html (curl, requests and aiohttp send */*)."""
    return (
        request.method not in ("GET", "HEAD")
        or "text/html" not in request.headers.get("Accept", "")
        or is_api_path(request.get(NORM_PATH, request.path))
        or "Authorization" in request.headers
        or request.headers.get("Upgrade", "").lower() == "websocket"
    )


def lang(request: web.Request) -> str:
    return pages.language(request.headers.get("Accept-Language"))
