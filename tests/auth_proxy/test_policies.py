"""CSRF, brute-force limits, the forced password change, health and metrics."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from auth_proxy.accounts import Accounts, accounts_url
from auth_proxy.app import GATE
from tests.support.proxy import PASSWORD, basic, login

SMOKE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}},
}


async def test_cookie_writes_need_a_matching_origin(stack, http):
    await login(http, stack)
    cases = [
        ({}, 403),
        ({"Origin": "http://evil.example"}, 403),
        ({"Origin": "null"}, 403),
        ({"Referer": "http://evil.example/x"}, 403),
        ({"Referer": stack.origin + "/"}, 200),
        ({"Origin": stack.origin}, 200),
    ]
    for headers, want in cases:
        async with http.post(stack.url("/api/prompt"), json={"prompt": SMOKE}, headers=headers) as r:
            assert r.status == want, headers
    # reads need no Origin
    async with http.get(stack.url("/queue")) as r:
        assert r.status == 200


async def test_cookie_websocket_needs_a_matching_origin(stack, http):
    await login(http, stack)
    try:
        await http.ws_connect(stack.url("/ws?clientId=x"), headers={"Origin": "http://evil.example"})
        raise AssertionError("cross-site WebSocket was accepted")
    except aiohttp.WSServerHandshakeError as exc:
        assert exc.status == 403
    ws = await http.ws_connect(stack.url("/ws?clientId=x"), headers={"Origin": stack.origin})
    assert json.loads((await ws.receive()).data)["type"] == "status"
    await ws.close()


async def test_token_and_basic_writes_are_exempt_from_the_origin_check(stack, http):
    for auth in (f"Bearer {stack.token}", basic("admin", PASSWORD)):
        async with http.post(
            stack.url("/prompt"), json={"prompt": SMOKE}, headers={"Authorization": auth}
        ) as r:
            assert r.status == 200


async def test_failed_logins_are_limited_with_growing_delays(stack, http):
    answers = []
    for user in ["admin", "nobody"] * 3:
        async with http.post(stack.url("/login"), json={"username": user, "password": "wrong-pass"}) as r:
            answers.append((r.status, await r.text()))
    # the same answer for an unknown user and a wrong password
    assert answers[0] == answers[1] and answers[0][0] == 401
    assert answers[5][0] == 429  # the sixth failure from one address
    async with http.post(stack.url("/login"), json={"username": "admin", "password": PASSWORD}) as r:
        assert r.status == 429, "even the right password waits out the delay"
        first = int(r.headers["Retry-After"])
    assert 1 <= first <= 2
    # Basic shares the limiter
    async with http.get(stack.url("/system_stats"), headers={"Authorization": basic("admin", PASSWORD)}) as r:
        assert r.status == 429 and "Retry-After" in r.headers
    gate_limiter = stack.proxy.app[GATE].limiter
    keys = ["ip:127.0.0.1"]
    now = time.time()
    gate_limiter.failed(keys, now)
    assert gate_limiter.retry_after(keys, now) > first, "each further failure waits longer"


async def test_default_password_must_be_changed_first(make_stack, http):
    stack = await make_stack(admin_password=None)
    # scripts are told why they are refused
    for auth in (basic("admin", "admin"), f"Bearer {stack.token}"):
        async with http.get(stack.url("/system_stats"), headers={"Authorization": auth}) as r:
            assert r.status == 403 and "default" in (await r.json())["error"]
    # a browser logs in and is sent to the change-password page, whatever it asks for
    async with http.post(
        stack.url("/login"),
        data={"username": "admin", "password": "admin", "next": "/queue"},
        allow_redirects=False,
    ) as r:
        assert r.status == 303 and r.headers["Location"].startswith("/_auth/password")
    async with http.get(stack.url("/queue"), allow_redirects=False, headers={"Accept": "text/html"}) as r:
        assert r.status == 302 and r.headers["Location"].startswith("/_auth/password")
    form = {"new_password": "short", "repeat_password": "short"}
    async with http.post(stack.url("/_auth/password"), data=form, headers={"Origin": stack.origin}) as r:
        assert r.status == 400
    form = {"new_password": "a-new-secret-1", "repeat_password": "a-new-secret-1", "next": "/queue"}
    async with http.post(
        stack.url("/_auth/password"), data=form, headers={"Origin": stack.origin}, allow_redirects=False
    ) as r:
        assert r.status == 303 and r.headers["Location"] == "/queue"
    async with http.get(stack.url("/queue")) as r:
        assert r.status == 200
    async with http.get(stack.url("/system_stats"), headers={"Authorization": f"Bearer {stack.token}"}) as r:
        assert r.status == 200
    async with http.get(stack.url("/system_stats"), headers={"Authorization": basic("admin", "admin")}) as r:
        assert r.status == 401
    admin = Accounts(accounts_url(stack.settings), "admin", None).account("admin")
    assert admin is not None and not admin.must_change
    stored = b"".join(p.read_bytes() for p in stack.tmp.rglob("*") if p.is_file())
    assert b"a-new-secret-1" not in stored, "only the password's hash is kept"


async def test_password_change_revokes_other_sessions(stack, http):
    await login(http, stack)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
        await login(other, stack)
        form = {
            "current_password": PASSWORD,
            "new_password": "another-secret-9",
            "repeat_password": "another-secret-9",
        }
        async with http.post(
            stack.url("/_auth/password"), data=form, headers={"Origin": stack.origin}, allow_redirects=False
        ) as r:
            assert r.status == 303
        async with other.get(stack.url("/queue"), headers={"Accept": "application/json"}) as r:
            assert r.status == 401
    async with http.get(stack.url("/queue")) as r:
        assert r.status == 200, "the browser that changed it stays logged in"


async def test_readyz_and_starting_page(make_stack, http, tmp_path, unused_tcp_port):
    stack = await make_stack()
    async with http.get(stack.url("/readyz")) as r:
        assert r.status == 200
    down = await make_stack(upstream=f"http://127.0.0.1:{unused_tcp_port}")
    progress = {
        "state": "running",
        "bytes_done": 2_000_000_000,
        "bytes_total": 8_000_000_000,
        "files_done": 1,
        "files_total": 3,
        "current": [{"path": "vae/wan_2.1_vae.safetensors", "bytes_done": 1, "bytes_total": 2}],
        "errors": [],
        "updated_at": 0,
    }
    down.settings.progress_file.write_text(json.dumps(progress))
    async with http.get(down.url("/readyz")) as r:
        body = await r.json()
        assert r.status == 503 and body["status"] == "starting" and "not answering" in body["reason"]
        assert body["model_sync"]["files_total"] == 3
    async with http.get(down.url("/queue"), headers={"Authorization": f"Bearer {down.token}"}) as r:
        assert r.status == 503 and r.headers["Retry-After"] and "starting" in (await r.json())["error"]
    await login(http, down)
    async with http.get(
        down.url("/"), headers={"Accept": "text/html", "Accept-Language": "zh-CN,zh;q=0.9"}
    ) as r:
        page = await r.text()
        assert r.status == 503 and 'http-equiv="refresh"' in page
        assert "正在启动" in page and "wan_2.1_vae.safetensors" in page and "1/3" in page
        assert "Traceback" not in page


async def test_metrics(stack, http):
    await login(http, stack)
    async with http.get(stack.url("/system_stats")) as r:
        assert r.status == 200
    async with http.post(stack.url("/login"), json={"username": "admin", "password": "bad-one!"}) as r:
        assert r.status == 401
    async with http.get(stack.url("/metrics")) as r:
        text = await r.text()
    assert 'comfy_proxy_requests_total{group="system_stats",status="200"} 1' in text
    assert "comfy_proxy_login_failures_total 1" in text
    assert "comfy_proxy_open_websockets 0" in text
    assert "comfy_proxy_upstream_seconds_count" in text and "comfy_queue_depth 0" in text
    async with aiohttp.ClientSession() as anon:
        async with anon.get(stack.url("/metrics"), headers={"Accept": "application/json"}) as r:
            assert r.status == 401


async def test_basic_pays_for_argon2_once_and_a_password_change_forgets_it(stack, http):
    store = stack.proxy.app[GATE].accounts
    calls = []
    real = store.check_password

    def counting(*args):
        calls.append(args[1])
        return real(*args)

    store.check_password = counting
    async with aiohttp.ClientSession() as script:
        for _ in range(5):
            async with script.get(
                stack.url("/queue"), headers={"Authorization": basic("admin", PASSWORD)}
            ) as r:
                assert r.status == 200
        assert len(calls) == 1, "a verified Basic credential is not re-hashed on every request"
        async with script.get(stack.url("/queue"), headers={"Authorization": basic("admin", "not-it")}) as r:
            assert r.status == 401
        await login(http, stack)
        form = {
            "current_password": PASSWORD,
            "new_password": "another-secret-9",
            "repeat_password": "another-secret-9",
        }
        async with http.post(
            stack.url("/_auth/password"), data=form, headers={"Origin": stack.origin}, allow_redirects=False
        ) as r:
            assert r.status == 303
        async with script.get(stack.url("/queue"), headers={"Authorization": basic("admin", PASSWORD)}) as r:
            assert r.status == 401, "the old password, remembered before the change, is refused after it"
        async with script.get(
            stack.url("/queue"), headers={"Authorization": basic("admin", "another-secret-9")}
        ) as r:
            assert r.status == 200


async def test_a_slow_password_check_does_not_hold_up_other_requests(stack):
    """argon2 runs off the event loop: while one Basic check is in progress (made slow
    here), token requests and health checks are answered."""
    store = stack.proxy.app[GATE].accounts
    real = store.check_password

    def slow(*args):
        time.sleep(1.5)
        return real(*args)

    store.check_password = slow
    async with aiohttp.ClientSession() as s:
        wrong = {"Authorization": basic("admin", "wrong-one")}
        pending = asyncio.ensure_future(s.get(stack.url("/queue"), headers=wrong))
        await asyncio.sleep(0.2)  # the Basic request is now inside the slow check
        for path in ("/healthz", "/queue"):
            async with s.get(stack.url(path), headers={"Authorization": f"Bearer {stack.token}"}) as r:
                assert r.status == 200
            assert not pending.done(), f"{path} was answered only after the slow check"
        async with await pending as r:
            assert r.status == 401
