"""Attacks on the wire, against a real `python -m auth_proxy` in front of the stand-in, as
bytes no HTTP client would send: request smuggling, request targets that are not a path,
path spellings on the catch-all, method overrides, and what the connection itself answers
to a request it cannot read. Each check looks at what reached "ComfyUI" too."""

from __future__ import annotations

import json

import aiohttp
import pytest
from yarl import URL

from tests.support.proxy import send_raw


def port_of(proxy) -> int:
    return int(proxy.base.rsplit(":", 1)[1])


async def upstream_hits(proxy) -> dict[str, int]:
    async with aiohttp.ClientSession() as s:
        async with s.get(proxy.base + "/_test/hits", headers={"Authorization": f"Bearer {proxy.token}"}) as r:
            return (await r.json())["hits"]


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


def inner(tag: str, host: str, token: str) -> str:
    """A complete second request, authenticated, to smuggle inside the first one's body."""
    return f"GET /_test/echo/{tag} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n"


# name -> (head lines after the request line and Host, body); "{inner}" is the smuggled request.
SMUGGLING = {
    "CL.TE": ("Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n{inner}"),
    "TE.CL": ("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", "0\r\n\r\n{inner}"),
    "TE obfuscated value": ("Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n", "0\r\n\r\n{inner}"),
    "TE list": ("Transfer-Encoding: chunked, identity\r\n", "0\r\n\r\n{inner}"),
    "TE doubled": ("Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n", "0\r\n\r\n{inner}"),
    "TE space before colon": ("Transfer-Encoding : chunked\r\n", "0\r\n\r\n{inner}"),
    "TE tab value": ("Transfer-Encoding:\tchunked\r\nContent-Length: 4\r\n", "0\r\n\r\n{inner}"),
    "duplicate CL": ("Content-Length: 0\r\nContent-Length: 60\r\n", "{inner}"),
    "CL list": ("Content-Length: 0, 60\r\n", "{inner}"),
    "CL signed": ("Content-Length: +0\r\n", "{inner}"),
    "obs-fold": ("X-Pad: a\r\n Transfer-Encoding: chunked\r\n", "0\r\n\r\n{inner}"),
    "chunk size with junk": ("Transfer-Encoding: chunked\r\n", "0x0\r\n\r\n{inner}"),
    "chunk extension LF only": ("Transfer-Encoding: chunked\r\n", "0;a\n\r\n{inner}"),
    "bare LF in head": ("X-Pad: a\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n{inner}"),
}


@pytest.mark.parametrize("name", list(SMUGGLING))
async def test_smuggling_variants_are_refused_and_smuggle_nothing(module_proxy, name):
    proxy = module_proxy
    host = proxy.base.removeprefix("http://")
    head, body = SMUGGLING[name]
    tag = "smuggled-" + name.replace(" ", "-").replace(".", "")
    body = body.format(inner=inner(tag, host, proxy.token))
    request = (
        f"POST /_test/echo/outer HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {proxy.token}\r\n"
        f"{head}\r\n{body}"
    )
    answer = await send_raw(port_of(proxy), request.encode(), limit=4096, timeout=3)
    statuses = [int(line.split(b" ")[1]) for line in answer.split(b"\r\n") if line.startswith(b"HTTP/1.")]
    assert statuses == [400], answer[:300]
    assert b"aiohttp" not in answer and b"Python" not in answer, answer[:300]
    hits = await upstream_hits(proxy)
    assert f"/_test/echo/{tag}" not in hits


async def test_a_request_inside_a_body_stays_a_body(module_proxy):
    """The relay frames the body itself: an exact Content-Length body holding a request
    line, or a chunked one, reaches ComfyUI as that many bytes and nothing more."""
    proxy = module_proxy
    host = proxy.base.removeprefix("http://")
    for framing in ("length", "chunked"):
        payload = inner(f"inside-{framing}", host, proxy.token)
        if framing == "length":
            head, body = f"Content-Length: {len(payload)}\r\n", payload
        else:
            head, body = "Transfer-Encoding: chunked\r\n", f"{len(payload):x}\r\n{payload}\r\n0\r\n\r\n"
        request = (
            f"POST /_test/echo/{framing} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {proxy.token}\r\n"
            f"Connection: close\r\n{head}\r\n{body}"
        )
        answer = await send_raw(port_of(proxy), request.encode(), limit=8192)
        assert status_of(answer) == 200, answer[:300]
        echoed = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        assert echoed["body_len"] == len(payload) and echoed["path"] == f"/_test/echo/{framing}"
    hits = await upstream_hits(proxy)
    assert not any(path.startswith("/_test/echo/inside-") for path in hits), hits


@pytest.mark.parametrize(
    "target",
    [
        "http://{up}/_test/echo/absolute",
        "http://{host}/_test/echo/absolute-self",
        "HTTP://{up}/_test/echo/abs-upper",
        "//{up}/_test/echo/scheme-relative",
        "{up}",
        "*",
        "@{up}/_test/echo/userinfo",
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST", "CONNECT", "OPTIONS"])
async def test_request_targets_that_are_not_a_path_are_refused(module_proxy, target, method):
    """This is no forward proxy: absolute-form (`GET http://host/x`), authority-form
    (CONNECT host:port) and `*` get 400, with credentials too, and reach nothing; a
    scheme-relative path is a path on this server like any other."""
    proxy = module_proxy
    host = proxy.base.removeprefix("http://")
    up = proxy.env["AUTH_PROXY_UPSTREAM"].removeprefix("http://")
    target = target.format(up=up, host=host)
    before = await upstream_hits(proxy)
    request = (
        f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {proxy.token}\r\n"
        "Accept: application/json\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    answer = await send_raw(port_of(proxy), request.encode(), limit=4096)
    status = status_of(answer)
    if target.startswith("//") and method != "CONNECT":
        # The path //host/... is /host/... to the gate, and relayed to ComfyUI as sent:
        # to ComfyUI's own address, which is no route of it (CONNECT takes no path).
        assert status == 404, answer[:300]
    else:
        assert status == 400, answer[:300]
    assert b"aiohttp" not in answer
    after = await upstream_hits(proxy)
    assert not any(
        p.startswith("/_test/echo/") and after[p] != before.get(p)
        for p in after
        if "scheme-relative" not in p
    ), (before, after)


# Spellings of closed paths: none may reach ComfyUI without credentials.
CLOSED_SPELLINGS = [
    "/%252e%252e/system_stats",
    "/%25252e%25252e/system_stats",
    "/\\system_stats",
    "/%5csystem_stats",
    "/%255csystem_stats",
    "/system_stats;x=1",
    "/api;/system_stats",
    "/login;/../system_stats",
    "/login/..;/system_stats",
    "/healthz;/../system_stats",
    "/%c0%ae%c0%ae/system_stats",
    "/%c0%afsystem_stats",
    "/%e0%80%ae%e0%80%ae/system_stats",
    "/%00/system_stats",
    "/healthz%00",
    "/system_stats%00.css",
    "/healthz%0a",
    "/healthz%0d%0a/system_stats",
    "/login%0a/../system_stats",
    "/%u002e%u002e/system_stats",
    "/_auth/login.css%3f/../../system_stats",
    "/login%3f/../system_stats",
    "/login%23/../system_stats",
    "/favicon.ico/..%2f..%2fsystem_stats",
    "/api/v2/jobs/..%2f..%2f..%2fsystem_stats",
    "/./healthz/../system_stats",
    "/HEALTHZ",
    "/healthz/",
    "/Login",
    "/%2fhealthz/../system_stats",
    "/\u00e9/../system_stats",
    "/%e2%80%ae/system_stats",
    "/%ef%bc%8e%ef%bc%8e/system_stats",
    "/healthz/%2e%2e/internal/logs",
]


@pytest.mark.parametrize("path", CLOSED_SPELLINGS)
async def test_no_spelling_of_a_closed_path_reaches_comfyui(module_proxy, path):
    proxy = module_proxy
    host = proxy.base.removeprefix("http://")
    before = await upstream_hits(proxy)
    for method in ("GET", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PROPFIND"):
        request = (
            f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n"
            "Connection: close\r\nContent-Length: 0\r\n\r\n"
        )
        answer = await send_raw(port_of(proxy), request.encode("utf-8"), limit=4096)
        assert status_of(answer) in (400, 401), f"{method} {path}: {answer[:200]!r}"
    after = await upstream_hits(proxy)
    assert {k: v for k, v in after.items() if k != "/_test/hits"} == {
        k: v for k, v in before.items() if k != "/_test/hits"
    }


@pytest.mark.parametrize("path", ["/healthz#/../system_stats", "/login?/../system_stats", "/%68ealthz"])
async def test_spellings_that_land_on_an_open_route_get_only_that_route(module_proxy, path):
    """A fragment, a query or an encoded letter: the proxy's own open page, nothing relayed."""
    proxy = module_proxy
    host = proxy.base.removeprefix("http://")
    before = await upstream_hits(proxy)
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    answer = await send_raw(port_of(proxy), request.encode(), limit=8192)
    assert status_of(answer) == 200
    body = answer.split(b"\r\n\r\n", 1)[1]
    assert body == b'{"status": "ok"}' or body.startswith(b"<!doctype html>") and b'action="/login"' in body
    assert (await upstream_hits(proxy)).get("/system_stats") == before.get("/system_stats")


async def test_encoded_line_breaks_with_credentials_are_no_error_and_reach_nothing(module_proxy):
    """Known: a path whose decoded form holds a line break matches no route of the proxy,
    so a logged-in client gets aiohttp's plain 404; nothing is relayed and nothing fails."""
    proxy = module_proxy
    before = await upstream_hits(proxy)
    async with aiohttp.ClientSession() as s:
        for path in ("/system_stats%0a", "/_test/echo%0d%0aX-Injected:%201", "/_test/echo/%0aGET%20/queue"):
            async with s.get(
                URL(proxy.base + path, encoded=True), headers={"Authorization": f"Bearer {proxy.token}"}
            ) as r:
                assert r.status in (400, 404), path
                assert "X-Injected" not in r.headers
    after = await upstream_hits(proxy)
    assert after.get("/system_stats") == before.get("/system_stats")
    assert not any("\n" in p or "\r" in p for p in after)


@pytest.mark.parametrize("header", ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"])
async def test_method_override_headers_do_not_change_what_the_gate_decides(module_proxy, header):
    """The gate judges the method on the request line: a cross-site POST that claims to be
    a GET is still a cookie write from another site (403), and a GET claiming DELETE
    reaches ComfyUI as the GET it is."""
    proxy = module_proxy
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.post(
            proxy.base + "/login", json={"username": "admin", "password": proxy.env["COMFY_ADMIN_PASSWORD"]}
        ) as r:
            assert r.status == 200
        async with s.post(
            proxy.base + "/_test/echo/override",
            headers={header: "GET", "Origin": "http://evil.example"},
            json={},
        ) as r:
            assert r.status == 403
        async with s.post(proxy.base + "/_test/echo/override", headers={header: "GET"}, json={}) as r:
            assert r.status == 403, "a cookie write without Origin is refused whatever the header says"
        async with s.get(proxy.base + "/_test/echo/override", headers={header: "DELETE"}) as r:
            assert r.status == 200 and (await r.json())["method"] == "GET"
        async with s.request("TRACE", proxy.base + "/_test/echo/trace", headers={"Origin": proxy.base}) as r:
            echoed = await r.json()
    # Nothing that proves who the client is reaches ComfyUI, which might reflect it.
    assert not {"cookie", "authorization"} & {k.lower() for k in echoed["headers"]}


async def test_what_the_connection_answers_itself_names_no_version_and_quotes_nothing(module_proxy):
    """aiohttp answers requests it cannot parse before the app sees them; those answers
    carried `Server: Python/3.x aiohttp/3.x` and quoted the request, a too-long Cookie
    header (the session id in it) included."""
    proxy = module_proxy
    host = proxy.base.removeprefix("http://")
    sid = "SESSIONIDnot-to-be-echoed"
    bad = [
        f"GET / HTTP/1.1\r\nHost: {host}\r\nCookie: comfy_session={sid}; pad={'A' * 9000}\r\n\r\n",
        f"GET / HTTP/1.1\r\nHost: {host}\r\nCookie: comfy_session={sid}\r\nX: \x01\r\n\r\n",
        f"GET /{'a' * 9000}?s={sid} HTTP/1.1\r\nHost: {host}\r\n\r\n",
        f"G@T / HTTP/1.1\r\nHost: {host}\r\nCookie: comfy_session={sid}\r\n\r\n",
        f"GET / HTTP/9.9\r\nHost: {host}\r\n\r\n",
    ]
    for request in bad:
        answer = await send_raw(port_of(proxy), request.encode("latin-1"), limit=16384)
        assert status_of(answer) in (400, 414, 431, 505), answer[:200]
        assert b"Server: comfy-stack\r\n" in answer, answer[:300]
        assert b"aiohttp" not in answer and b"Python" not in answer
        assert sid.encode() not in answer and b"AAAA" not in answer, answer[-300:]
