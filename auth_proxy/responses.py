"""How the gate answers and reads what it is sent: JSON errors for programs, pages for
browsers, the session cookie, the same-origin test, and the small bodies of its own forms."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from aiohttp import web

from auth_proxy import pages
from auth_proxy.gate import GATE, NORM_PATH
from auth_proxy.paths import is_api_path
from auth_proxy.sessions import COOKIE


class BadBody(ValueError):
    """The body of a form or JSON request the gate reads itself is unusable."""


# Form and JSON bodies the gate reads itself are a few hundred bytes; a larger one is not
# a login, and reading it would only cost memory.
BODY_LIMIT = 16 * 1024
FIELD_LIMIT = 1024
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


def secure(request: web.Request) -> bool:
    mode = request.config_dict[GATE].s.secure_cookies
    if mode != "auto":
        return mode == "always"
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def start_session(resp: web.StreamResponse, request: web.Request) -> web.StreamResponse:
    """A new server-side session for the admin, and its cookie on `resp`."""
    gate = request.config_dict[GATE]
    sid = gate.sessions.create(gate.admin.user, gate.admin.generation)
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


def safe_next(value: str | None) -> str:
    """Only a same-origin relative path: no scheme, no '//host', no backslash tricks, no
    control characters; anything outside printable ASCII is percent-encoded, so that the
    Location header it ends up in is always sendable."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "/"
    value = quote(value, safe="".join(chr(c) for c in range(33, 127)))
    if urlsplit(value).netloc:
        return "/"
    return value


def fetch_site(request: web.Request) -> str:
    """How the browser relates the page that made this request to this server:
    'same-origin', 'same-site' (same host, another port or subdomain), 'cross-site', 'none'
    (typed, a bookmark), or 'unknown' (no browser headers: a program). Browsers without
    Sec-Fetch-Site are judged by Origin or Referer."""
    site = request.headers.get("Sec-Fetch-Site", "").strip().lower()
    if site:
        return site
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source:
        return "unknown"
    return "same-origin" if same_origin(request) else "cross-site"


def same_origin(request: web.Request) -> bool:
    """Origin (or Referer) names the host the client asked for (behind a trusted proxy,
    the forwarded one: the request has been re-addressed by the normalise step)."""
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source or source == "null":
        return False
    return urlsplit(source).netloc.lower() == request.host.lower()


def too_large(size: int) -> web.HTTPRequestEntityTooLarge:
    exc = web.HTTPRequestEntityTooLarge(BODY_LIMIT, size)
    # Close rather than keep the connection: aiohttp would otherwise go on receiving (and
    # holding) the rest of a body nobody will read.
    exc.force_close()
    return exc


async def small_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > BODY_LIMIT:
        raise too_large(request.content_length)
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > BODY_LIMIT:
            raise too_large(len(body))
    return bytes(body)


async def read_fields(request: web.Request, names: tuple[str, ...]) -> tuple[dict[str, str], bool]:
    """The named text fields (those present) of a JSON object or a form, and whether it
    was JSON; BadBody for anything else, with what is wrong."""
    is_json = request.content_type == "application/json"
    data: Any  # a form's multidict, or whatever the JSON holds (checked below)
    if request.content_type == "multipart/form-data":
        if request.content_length is None or request.content_length > BODY_LIMIT:
            raise BadBody(f"send a form of at most {BODY_LIMIT} bytes with a Content-Length")
        data = await request.post()
    else:
        body = await small_body(request)
        try:
            data = json.loads(body) if is_json else dict(parse_qsl(body.decode(), keep_blank_values=True))
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than Python's stack
            raise BadBody(
                "the body is not valid JSON" if is_json else "the form is not valid UTF-8"
            ) from None
    if not isinstance(data, Mapping):
        raise BadBody("send a JSON object")
    fields = {}
    for name in names:
        if name not in data:
            continue
        value = data[name]
        if not isinstance(value, str):
            raise BadBody(f"{name} must be text")
        if len(value) > FIELD_LIMIT:
            raise BadBody(f"{name} is longer than {FIELD_LIMIT} characters")
        fields[name] = value
    return fields, is_json
