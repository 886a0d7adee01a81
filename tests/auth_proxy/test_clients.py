"""What clients are told: programs get 401 JSON with the challenges that drive them,
browsers get the login page; and input the gate reads itself is refused with a clear 400,
never a 500 or a dropped connection."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import aiohttp
import pytest
import requests

from tests.support.proxy import PASSWORD, login


async def test_a_401_carries_the_challenges(stack, http):
    async with aiohttp.ClientSession() as anon:
        async with anon.get(stack.url("/queue")) as r:
            assert r.status == 401
            assert r.headers.getall("WWW-Authenticate") == [
                'Basic realm="ComfyUI", charset="UTF-8"',
                'Bearer realm="ComfyUI"',
            ]
    # a browser's request (a cookie, or Sec-Fetch-*) gets none: no password dialog over the app
    await login(http, stack)
    async with http.post(
        stack.url("/logout"), headers={"Origin": stack.origin, "Accept": "application/json"}
    ):
        pass
    async with http.get(stack.url("/queue"), headers={"Cookie": "comfy_session=ended"}) as r:
        assert r.status == 401 and "WWW-Authenticate" not in r.headers
    async with aiohttp.ClientSession() as anon:
        async with anon.get(stack.url("/api/queue"), headers={"Sec-Fetch-Site": "same-origin"}) as r:
            assert r.status == 401 and "WWW-Authenticate" not in r.headers


# The blocking clients run in a thread: the servers under test share this event loop.


async def test_urllib_basic_auth_handler_logs_in_on_the_challenge(stack):
    """urllib sends Basic credentials only after a challenge: without one it gives up."""
    passwords = urllib.request.HTTPPasswordMgrWithDefaultRealm()
    passwords.add_password(None, stack.url("/"), "admin", PASSWORD)
    opener = urllib.request.build_opener(urllib.request.HTTPBasicAuthHandler(passwords))

    def fetch():
        with opener.open(stack.url("/queue"), timeout=10) as r:
            return r.status, json.loads(r.read())

    status, body = await asyncio.to_thread(fetch)
    assert status == 200 and "queue_running" in body


@pytest.mark.parametrize("accept", ["*/*", None, "application/json, text/plain, */*"])
async def test_programs_get_401_json_not_the_login_page(stack, accept):
    """requests, curl and aiohttp send Accept: */*: a redirect to an HTML page breaks
    clients that expect JSON (ComfyScript fails on the content type)."""
    headers = {"Accept": accept} if accept else {}
    r = await asyncio.to_thread(
        requests.get, stack.url("/object_info"), headers=headers, allow_redirects=False, timeout=10
    )
    assert r.status_code == 401 and r.headers["Content-Type"].startswith("application/json")
    assert "login required" in r.json()["error"]


async def test_browsers_still_get_the_login_page(stack):
    accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    r = await asyncio.to_thread(
        requests.get, stack.url("/"), headers={"Accept": accept}, allow_redirects=False, timeout=10
    )
    assert r.status_code == 302 and r.headers["Location"] == "/login?next=/"


BAD_JSON = [
    b"{not json",
    b"[1, 2]",
    b'"text"',
    b"null",
    b"[" * 8000 + b"]" * 8000,
    b'{"username": 1, "password": "x"}',
    b'{"username": ["admin"], "password": "x"}',
    b'{"username": "admin", "password": {"a": 1}}',
    b"\xff\xfe",
]


@pytest.mark.parametrize("body", BAD_JSON, ids=[repr(b[:20]) for b in BAD_JSON])
async def test_unusable_json_is_a_400(stack, http, body):
    async with http.post(stack.url("/login"), data=body, headers={"Content-Type": "application/json"}) as r:
        assert r.status == 400, await r.text()
        assert "username" in (await r.json())["error"]
    await login(http, stack)
    pw_body = body.replace(b'"username"', b'"new_password"').replace(b'"password"', b'"repeat_password"')
    async with http.post(
        stack.url("/_auth/password"),
        data=pw_body,
        headers={"Content-Type": "application/json", "Origin": stack.origin},
    ) as r:
        assert r.status == 400, await r.text()
        assert "new_password" in (await r.json())["error"]


async def test_a_form_that_is_not_text_is_a_400(stack, http):
    async with http.post(
        stack.url("/login"),
        data=b"username=\xff&password=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ) as r:
        assert r.status == 400


@pytest.mark.parametrize(
    "next_url,location",
    [
        ("/\x7fevil", "/"),
        ("/queue\x00", "/"),
        ("/\r\nSet-Cookie: x=1", "/"),
        ("/view?filename=图像.png", "/view?filename=%E5%9B%BE%E5%83%8F.png"),
        ("/a b", "/a%20b"),
        ("/%2e%2e/x", "/%2e%2e/x"),
    ],
)
async def test_any_next_gives_a_sendable_redirect(stack, next_url, location):
    async with aiohttp.ClientSession() as s:
        async with s.post(
            stack.url("/login"),
            data={"username": "admin", "password": PASSWORD, "next": next_url},
            allow_redirects=False,
        ) as r:
            assert r.status == 303 and r.headers["Location"] == location


async def test_an_oversized_login_body_is_refused(stack, http):
    async with http.post(stack.url("/login"), json={"username": "a" * 20_000, "password": "x"}) as r:
        assert r.status == 413
    async with http.post(stack.url("/login"), json={"username": "a" * 2000, "password": "x"}) as r:
        assert r.status == 400 and "longer than" in (await r.json())["error"]
