"""How the gate answers and reads what it is sent: JSON errors for programs, pages for
browsers, the session cookie, the same-origin test, and the small bodies of its own forms."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from auth_proxy import pages
from auth_proxy.gate import GATE, NORM_PATH
from auth_proxy.paths import is_api_path
from auth_proxy.sessions import COOKIE


class BadBody(ValueError):
    """The body of a form or JSON request the gate reads itself is unusable."""


def error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def see_other(location: str) -> web.Response:
    # A plain response rather than web.HTTPSeeOther: cookies are set on it before returning.
    return web.Response(status=303, headers={"Location": location})


def html(text: str, status: int = 200, **headers: str) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", headers=headers)


def prefers_json(request: web.Request) -> bool:
    """The client's Accept asks for JSON rather than a page."""
    accept = request.headers.get("Accept", "")
    return "json" in accept and "text/html" not in accept


def wants_json(request: web.Request) -> bool:
    """A program rather than a browser loading a page: JSON errors, never a redirect."""
    return (request.method not in ("GET", "HEAD") or is_api_path(request.get(NORM_PATH, request.path))
            or prefers_json(request)
            or "Authorization" in request.headers
            or request.headers.get("Upgrade", "").lower() == "websocket")


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
    resp.set_cookie(COOKIE, sid, httponly=True, samesite="Lax", secure=secure(request),
                    path="/", max_age=int(gate.sessions.lifetime_s))
    return resp


def safe_next(value: str | None) -> str:
    """Only a same-origin relative path: no scheme, no '//host', no backslash tricks."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if urlsplit(value).netloc or any(ord(c) < 32 for c in value):
        return "/"
    return value


def same_origin(request: web.Request) -> bool:
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source or source == "null":
        return False
    host = urlsplit(source).netloc.lower()
    allowed = {request.host.lower()}
    if "X-Forwarded-Host" in request.headers:
        allowed.add(request.headers["X-Forwarded-Host"].split(",")[0].strip().lower())
    return host in allowed


async def read_fields(request: web.Request) -> tuple[Mapping[str, Any], bool]:
    """The fields of a JSON object or a form, and whether it was JSON; BadBody otherwise."""
    is_json = request.content_type == "application/json"
    try:
        data = await request.json() if is_json else await request.post()
    except ValueError:
        raise BadBody("the body is not valid JSON") from None
    if is_json and not isinstance(data, dict):
        raise BadBody("send a JSON object")
    return data, is_json
