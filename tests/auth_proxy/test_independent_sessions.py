"""Sessions and the browser's view, against a real `python -m auth_proxy`: session
fixation, cookie flags (behind a trusted TLS proxy too), where `next=` may send a browser,
what caches may keep, credentials in URLs, WebSockets from other sites, and whether the
login tells an unknown user from a wrong password."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import aiohttp
import pytest

from auth_proxy import hashing
from tests.support.proxy import PASSWORD, basic, from_address


def browser() -> aiohttp.ClientSession:
    # A cookie jar that keeps cookies for IP hosts, like a browser on 127.0.0.1.
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def log_in(s: aiohttp.ClientSession, base: str, **kw) -> aiohttp.ClientResponse:
    async with s.post(base + "/login", json={"username": "admin", "password": PASSWORD}, **kw) as r:
        assert r.status == 200, await r.text()
        return r


async def test_a_session_id_planted_before_login_is_not_adopted(module_proxy):
    """Session fixation: whatever cookie the browser had (one an attacker planted from a
    sibling subdomain, say), the login issues a new random id, and the planted one never
    becomes a login."""
    base = module_proxy.base
    async with browser() as s:
        planted = "attacker-knows-this-value-0123456789abcdef"
        s.cookie_jar.update_cookies({"comfy_session": planted})
        r = await log_in(s, base)
        issued = r.cookies["comfy_session"].value
        assert issued != planted and len(issued) >= 40
    async with aiohttp.ClientSession() as attacker:
        async with attacker.get(base + "/system_stats", headers={"Cookie": f"comfy_session={planted}"}) as r:
            assert r.status == 401
        # A session of the attacker's own, sent along at the victim's login, is not kept either.
    async with browser() as s:
        first = (await log_in(s, base)).cookies["comfy_session"].value
        second = (await log_in(s, base)).cookies["comfy_session"].value
        assert first != second


async def test_cookie_flags_directly_and_behind_a_trusted_tls_proxy(module_proxy, spawn_proxy):
    async with browser() as s:
        cookie = (await log_in(s, module_proxy.base)).headers["Set-Cookie"]
    assert re.search(r"(?i)\bHttpOnly\b", cookie) and re.search(r"(?i)SameSite=Lax", cookie)
    assert "Path=/" in cookie and "Secure" not in cookie and "Domain" not in cookie
    behind = spawn_proxy(AUTH_PROXY_TRUSTED_PROXIES="127.0.0.0/8")
    async with browser() as s:
        cookie = (
            await log_in(
                s, behind.base, headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
            )
        ).headers["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie
        async with s.post(
            behind.base + "/logout",
            headers={"Origin": behind.base, "X-Forwarded-Proto": "https"},
            allow_redirects=False,
        ) as r:
            gone = r.headers["Set-Cookie"]
    assert "comfy_session=" in gone and ("Max-Age=0" in gone or "expires=Thu, 01 Jan 1970" in gone)


NEXT_VARIANTS = [
    "//evil.example/",
    "/\\evil.example",
    "\\\\evil.example",
    "/%2F/evil.example",
    "%2F%2Fevil.example",
    "https:evil.example",
    "http:/evil.example",
    "https:/\\evil.example",
    "/\t/evil.example",
    "/\r\n/evil.example",
    " //evil.example",
    "///evil.example",
    "/.//evil.example",
    "/%09/evil.example",
    "/%5Cevil.example",
    "/\u3002evil.example",
    "//evil.example@127.0.0.1/",
    "/@evil.example",
    "javascript:alert(1)",
    "data:text/html,x",
    "/\x7f/evil.example",
    "%0d%0aSet-Cookie:x=1",
]


@pytest.mark.parametrize("next_url", NEXT_VARIANTS)
async def test_next_never_leads_off_this_origin(module_proxy, next_url):
    """Whatever `next` holds, the Location after a login is a path that a browser
    resolves on this origin (checked as a browser resolves it, backslashes as slashes)."""
    base = module_proxy.base
    async with browser() as s:
        for how in ("form", "query"):
            data = {"username": "admin", "password": PASSWORD}
            url = base + "/login"
            if how == "form":
                data["next"] = next_url
            else:
                url += "?next=" + next_url.replace("%", "%25").replace("&", "%26")
            async with s.post(url, data=data, allow_redirects=False) as r:
                if how == "query" and r.status == 400:  # control characters in the query string
                    continue
                assert r.status == 303, await r.text()
                location = r.headers["Location"]
            assert "\r" not in location and "\n" not in location
            assert [c.split("=")[0] for c in r.headers.getall("Set-Cookie")] == ["comfy_session"]
            resolved = urlsplit(urljoin(base + "/login", location.replace("\\", "/")))
            assert (resolved.scheme, resolved.netloc) == ("http", base.removeprefix("http://")), (
                next_url,
                location,
            )
        async with s.get(base + "/login", params={"next": next_url}) as r:
            if r.status == 400:  # control characters in the query string
                return
            field = re.search(r'name="next" value="([^"]*)"', await r.text()).group(1)
        resolved = urlsplit(urljoin(base + "/login", field.replace("\\", "/").replace("&amp;", "&")))
        assert resolved.netloc == base.removeprefix("http://"), field


async def test_what_the_proxy_answers_itself_is_kept_by_no_cache(module_proxy):
    """The login and password pages, who is logged in, refusals and metrics: `no-store`;
    a relayed answer ComfyUI sent without a cache policy was behind the login, so
    `private` (no shared cache may keep it for the next visitor)."""
    base, token = module_proxy.base, module_proxy.token
    bearer = {"Authorization": f"Bearer {token}"}
    async with browser() as s:
        await log_in(s, base)
        with_cookie = [
            ("/login", {}),
            ("/_auth/password", {"Accept": "text/html"}),
            ("/_auth/session", {}),
            ("/healthz", {}),
        ]
        for path, headers in with_cookie:
            async with s.get(base + path, headers=headers, allow_redirects=False) as r:
                assert r.status == 200 and r.headers.get("Cache-Control") == "no-store", (path, r.headers)
    async with aiohttp.ClientSession() as other:
        for path, headers in [
            ("/metrics", bearer),
            ("/api/v2/jobs", bearer),
            ("/system_stats", {}),
            ("/system_stats", {"Authorization": "Bearer cst_wrong"}),
        ]:
            async with other.get(base + path, headers=headers) as r:
                assert r.headers.get("Cache-Control") == "no-store", (path, r.status, r.headers)
    async with browser() as s:
        async with s.post(base + "/login", json={"username": "admin", "password": PASSWORD}) as r:
            assert r.headers.get("Cache-Control") == "no-store"
        async with s.get(base + "/history") as r:
            assert r.status == 200 and r.headers.get("Cache-Control") == "private"


async def test_credentials_never_travel_in_a_page_url(module_proxy):
    """The login form posts (a GET would put the password in the URL, the history and the
    Referer of the next page), a GET of /login with credentials in the query logs nobody
    in, and `?token=` opens only the WebSocket: a page URL holding one is refused."""
    base, token = module_proxy.base, module_proxy.token
    async with browser() as s:
        async with s.get(base + "/login") as r:
            page = await r.text()
        assert re.search(r'<form method="post" action="/login">', page)
        async with s.get(base + "/login", params={"username": "admin", "password": PASSWORD}) as r:
            assert "Set-Cookie" not in r.headers
        for path in ("/", "/system_stats", "/api/userdata", "/view"):
            async with s.get(
                base + path, params={"token": token}, allow_redirects=False, headers={"Accept": "text/html"}
            ) as r:
                assert r.status in (302, 401), path


async def test_websockets_without_credentials_or_from_other_sites_are_refused(module_proxy):
    base, token = module_proxy.base, module_proxy.token
    async with aiohttp.ClientSession() as s:
        for kw in (
            {},
            {"protocols": (token,)},
            {"protocols": ("bearer", token)},
            {"headers": {"Sec-WebSocket-Protocol": f"Authorization.Bearer.{token}"}},
        ):
            with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
                await s.ws_connect(base + "/ws", **kw)
            assert exc.value.status == 401, kw
        cross = {"Authorization": basic("admin", PASSWORD), "Origin": "http://evil.example"}
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await s.ws_connect(base + "/ws", headers=cross)
        assert exc.value.status == 403, "a remembered Basic login must not open a socket for another site"
    async with browser() as s:
        await log_in(s, base)
        for origin in (
            "http://evil.example",
            "null",
            base + ".evil.example",
            base.replace("127.0.0.1", "localhost"),
            base + ":1",
        ):
            with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
                await s.ws_connect(base + "/ws", headers={"Origin": origin})
            assert exc.value.status == 403, origin
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await s.ws_connect(base + "/ws")  # a cookie and no Origin: not a browser's page of this host
        assert exc.value.status == 403
        async with s.ws_connect(base + "/ws", headers={"Origin": base}) as ws:
            assert (await ws.receive_json(timeout=5))["type"] == "status"


async def test_an_unknown_user_and_a_wrong_password_look_the_same(make_stack, monkeypatch):
    """Same answer, and the same work (one argon2 verification against a hash of the same
    cost), so that neither the body nor the time tells whether the name exists."""
    stack = await make_stack()
    checked: list[str] = []
    original = hashing.verify

    def counting(hashed: str, password: str) -> bool:
        checked.append(hashed.rsplit("$", 2)[0])  # the algorithm and its cost parameters
        return original(hashed, password)

    monkeypatch.setattr(hashing, "verify", counting)
    answers = []
    for n, user in enumerate(("admin", "no-such-user", "Admin ", "")):
        async with from_address(f"127.0.9.{n + 1}") as s:
            async with s.post(
                stack.url("/login"), json={"username": user, "password": "wrong-password"}
            ) as r:
                answers.append((r.status, await r.json()))
    assert all(a == answers[0] for a in answers) and answers[0][0] == 401, answers
    assert len(checked) == 4 and len(set(checked)) == 1, checked


XSS = '/"><script>alert(1)</script><img src=x onerror=alert(2)>'


async def test_no_markup_from_the_url_reaches_the_proxy_pages(module_proxy):
    """`next` in the login and password pages, and the path in the cross-site page, are
    text: no tag or attribute of the URL's making."""
    base = module_proxy.base
    async with browser() as s:
        async with s.get(base + "/login", params={"next": XSS}) as r:
            page = await r.text()
        assert "<script" not in page and "<img" not in page
        await log_in(s, base)
        async with s.get(
            base + "/_auth/password", params={"next": XSS}, headers={"Accept": "text/html"}
        ) as r:
            page = await r.text()
        assert r.status == 200 and "<script" not in page and "<img" not in page
        async with s.get(
            base + XSS.replace(" ", "%20"),
            headers={"Accept": "text/html", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"},
        ) as r:
            page = await r.text()
        assert r.status == 403 and "<script" not in page and "<img" not in page and 'href="/"' in page
