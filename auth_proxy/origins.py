"""Where a request comes from, as a browser tells it: the same-origin test the CSRF check
and the login's `next` rely on."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from aiohttp import web


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
