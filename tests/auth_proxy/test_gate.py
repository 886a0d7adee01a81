"""Who gets in: every ComfyUI route is closed without credentials and open with each of
the three ways in; no spelling of a path gets around the gate."""

from __future__ import annotations

import dataclasses
import time

import aiohttp
import pytest
from yarl import URL

from auth_proxy.accounts import ACCOUNTS_DB
from auth_proxy.app import create_app
from tests.support.proxy import PASSWORD, basic, login

# (method, path, body) for ComfyUI's routes that leak or control something.
ROUTES = [
    ("GET", "/system_stats", None),
    ("GET", "/queue", None),
    ("POST", "/queue", {"clear": True}),
    ("GET", "/prompt", None),
    ("GET", "/history", None),
    ("POST", "/history", {"clear": True}),
    ("GET", "/object_info", None),
    ("POST", "/interrupt", {}),
    ("POST", "/free", {"unload_models": True}),
    ("GET", "/internal/logs", None),
    ("GET", "/internal/folder_paths", None),
    ("GET", "/userdata", None),
    ("GET", "/v2/userdata", None),
    ("GET", "/users", None),
    ("GET", "/settings", None),
    ("POST", "/settings", {"a": 1}),
    ("GET", "/features", None),
    ("GET", "/embeddings", None),
    ("GET", "/extensions", None),
]
ROUTES += [(m, "/api" + p, b) for m, p, b in ROUTES]
ids = [f"{m} {p}" for m, p, _ in ROUTES]


@pytest.mark.parametrize("method,path,body", ROUTES, ids=ids)
async def test_route_denied_without_credentials(stack, http, method, path, body):
    async with http.request(
        method, stack.url(path), json=body, allow_redirects=False, headers={"Accept": "application/json"}
    ) as r:
        assert r.status == 401
        assert "login required" in (await r.json())["error"]


async def test_browser_is_sent_to_login_with_next(stack, http):
    async with http.get(
        stack.url("/history?max_items=5"), allow_redirects=False, headers={"Accept": "text/html"}
    ) as r:
        assert r.status == 302
        location = URL(r.headers["Location"])
        assert location.path == "/login" and location.query["next"] == "/history?max_items=5"


@pytest.mark.parametrize("how", ["cookie", "basic", "bearer"])
async def test_every_route_open_with_each_way_in(stack, http, how):
    headers = {}
    if how == "cookie":
        await login(http, stack)
        headers["Origin"] = stack.origin
    elif how == "basic":
        headers["Authorization"] = basic("admin", PASSWORD)
    else:
        headers["Authorization"] = f"Bearer {stack.token}"
    for method, path, body in ROUTES:
        async with http.request(method, stack.url(path), json=body, headers=headers) as r:
            assert r.status == 200, f"{how}: {method} {path} -> {r.status} {await r.text()}"


TRICKS = [
    "/%2e%2e/system_stats",
    "//system_stats",
    "/api/../system_stats",
    "/login/../system_stats",
    "/healthz/..%2fsystem_stats",
    "/%252e%252e/internal/logs",
    "/System_Stats",
    "/system_stats.js",
    "/foo.js",
    "/login.css",
    "/_auth/login.css/../../history",
    "/internal//logs",
    "/api/%2e%2e/api/internal/logs",
    "/readyz/../internal/logs",
]


@pytest.mark.parametrize("path", TRICKS)
async def test_no_path_spelling_gets_past_the_gate(stack, path):
    async with aiohttp.ClientSession() as s:
        for method in ("GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"):
            async with s.request(
                method,
                URL(stack.url(path), encoded=True),
                allow_redirects=False,
                headers={"Accept": "application/json"},
            ) as r:
                assert r.status in (400, 401), f"{method} {path} -> {r.status}"
    assert stack.up_state["queue"] == [] and "last_ws_query" not in stack.up_state


async def test_public_paths_need_nothing(stack, http):
    for path in ("/login", "/healthz", "/readyz", "/_auth/login.css"):
        async with http.get(stack.url(path), allow_redirects=False) as r:
            assert r.status == 200, path


async def test_wrong_credentials_are_refused(stack, http):
    for auth in (basic("admin", "nope-nope"), basic("root", PASSWORD), "Bearer cst_not-a-token", "Basic !!!"):
        async with http.get(stack.url("/system_stats"), headers={"Authorization": auth}) as r:
            assert r.status == 401, auth


async def test_open_redirect_is_refused(stack, http):
    for bad in ("https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:alert(1)"):
        async with http.post(
            stack.url("/login"),
            data={"username": "admin", "password": PASSWORD, "next": bad},
            allow_redirects=False,
        ) as r:
            assert r.status == 303 and r.headers["Location"] == "/", bad
    async with http.post(
        stack.url("/login"),
        data={"username": "admin", "password": PASSWORD, "next": "/history?x=1"},
        allow_redirects=False,
    ) as r:
        assert r.headers["Location"] == "/history?x=1"


async def test_cookie_flags(stack, http):
    async with http.post(stack.url("/login"), json={"username": "admin", "password": PASSWORD}) as r:
        cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    async with aiohttp.ClientSession() as s:
        async with s.post(
            stack.url("/login"),
            json={"username": "admin", "password": PASSWORD},
            headers={"X-Forwarded-Proto": "https"},
        ) as r:
            assert "Secure" in r.headers["Set-Cookie"]


async def test_logout_revokes_the_session(stack, http):
    await login(http, stack)
    sid = [c for c in http.cookie_jar if c.key == "comfy_session"][0].value
    async with http.post(stack.url("/logout"), headers={"Origin": stack.origin}, allow_redirects=False) as r:
        assert r.status == 303
    # the old cookie value, replayed, is dead server-side
    async with aiohttp.ClientSession() as s:
        async with s.get(
            stack.url("/system_stats"),
            headers={"Cookie": f"comfy_session={sid}", "Accept": "application/json"},
        ) as r:
            assert r.status == 401


async def test_sessions_survive_a_restart_of_the_proxy_but_not_a_logout(stack, http, aiohttp_server):
    """A restarted proxy (supervisord, a new container on the same state volume) still knows
    the browser's session; the database holds only hashes of session ids, readable by its
    owner only."""
    await login(http, stack)
    sid = [c for c in http.cookie_jar if c.key == "comfy_session"][0].value
    db = stack.settings.state_dir / ACCOUNTS_DB
    assert sid.encode() not in db.read_bytes() + b"".join(
        p.read_bytes() for p in db.parent.glob(ACCOUNTS_DB + "-*")
    )
    assert oct(db.stat().st_mode)[-3:] == "600"
    restarted = await aiohttp_server(create_app(stack.settings))
    headers = {"Cookie": f"comfy_session={sid}", "Accept": "application/json"}
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{restarted.port}/system_stats", headers=headers) as r:
            assert r.status == 200
    async with http.post(stack.url("/logout"), headers={"Origin": stack.origin}, allow_redirects=False) as r:
        assert r.status == 303
    again = await aiohttp_server(create_app(stack.settings))
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{again.port}/system_stats", headers=headers) as r:
            assert r.status == 401


async def test_an_installation_from_before_accounts_upgrades_with_no_step(tmp_path, aiohttp_server, stack):
    """The state directory of an older release (admin.json, tokens.json, sessions.json):
    the admin keeps its password, its token and its browser session, and the old files are
    kept aside, never read again."""
    import hashlib
    import json

    from auth_proxy import hashing

    state = tmp_path / "old" / "auth"
    state.mkdir(parents=True)
    token, sid = "cst_" + "t" * 43, "s" * 43
    (state / "admin.json").write_text(
        json.dumps(
            {
                "user": "boss",
                "password_hash": hashing.hash_password("old-secret-1"),
                "must_change": False,
                "generation": 3,
            }
        )
    )
    (state / "tokens.json").write_text(
        json.dumps({"tokens": {"ci": {"sha256": hashlib.sha256(token.encode()).hexdigest(), "created": 1}}})
    )
    key = hashlib.sha256(sid.encode()).hexdigest()
    (state / "sessions.json").write_text(
        json.dumps({"sessions": {key: {"user": "boss", "generation": 3, "expires": time.time() + 3600}}})
    )
    settings = dataclasses.replace(stack.settings, state_dir=state, admin_user="boss", admin_password=None)
    server = await aiohttp_server(create_app(settings))
    base = f"http://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession() as s:
        for headers in (
            {"Authorization": basic("boss", "old-secret-1")},
            {"Authorization": f"Bearer {token}"},
            {"Cookie": f"comfy_session={sid}"},
        ):
            async with s.get(base + "/_auth/session", headers=headers) as r:
                assert r.status == 200 and (await r.json())["role"] == "admin", headers
    assert sorted(p.name for p in state.glob("*.json*")) == [
        "admin.json.imported",
        "sessions.json.imported",
        "tokens.json.imported",
    ]


async def test_a_route_added_later_is_behind_the_gate(stack, aiohttp_server, http):
    """A route another module registers (the v2 job API, say) gets the whole pipeline:
    no credentials, no answer; with them, the handler knows who is asking."""
    from auth_proxy.app import WHO

    async def whoami(request):
        return aiohttp.web.json_response({"user": request[WHO].user, "via": request[WHO].via})

    app = create_app(stack.settings)
    app.router.add_get("/api/v2/whoami", whoami)
    server = await aiohttp_server(app)
    base = f"http://127.0.0.1:{server.port}"
    async with http.get(base + "/api/v2/whoami") as r:
        assert r.status == 401
    async with http.get(base + "/api/v2/whoami", headers={"Authorization": f"Bearer {stack.token}"}) as r:
        assert r.status == 200 and await r.json() == {"user": "admin", "via": "bearer"}
