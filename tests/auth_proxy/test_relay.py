"""The relay: headers, WebSocket frames and close codes, and bodies streamed both ways
through a proxy process whose memory is measured."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp

from auth_proxy.ws_filter import bound_client_id
from tests.support import REPO, peak_rss_mb, stop_process
from tests.support.native import owner_of
from tests.support.proxy import PASSWORD


async def test_headers_keep_comfyui_origin_check_happy(stack, http):
    headers = {
        "Authorization": f"Bearer {stack.token}",
        "Origin": "https://comfy.example.com",
        "Cookie": "comfy_session=abc; other=1",
        "Connection": "keep-alive, X-Drop",
        "X-Custom": "kept",
    }
    async with http.post(stack.url("/_test/echo/a?b=1&c=2"), data=b"hello", headers=headers) as r:
        seen = await r.json()
    h = {k.lower(): v for k, v in seen["headers"].items()}
    up = stack.settings.upstream.split("//")[1]
    assert h["host"] == up and h["origin"] == f"http://{up}"
    assert "authorization" not in h and "cookie" not in h
    assert h["x-forwarded-for"] == "127.0.0.1" and h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-host"] == f"127.0.0.1:{stack.proxy.port}" and h["x-custom"] == "kept"
    assert seen["query"] == {"b": "1", "c": "2"} and seen["body_len"] == 5 and seen["method"] == "POST"


async def test_websocket_relays_text_binary_and_close_codes(stack, http):
    ws = await http.ws_connect(stack.url("/_test/ws"), headers={"Authorization": f"Bearer {stack.token}"})
    await ws.send_str("hello")
    assert (await ws.receive()).data == "hello"
    blob = os.urandom(300_000)
    await ws.send_bytes(blob)
    msg = await ws.receive()
    assert msg.type == aiohttp.WSMsgType.BINARY and msg.data == blob
    await ws.send_str("close:4321")
    msg = await ws.receive()
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4321


async def test_ws_query_token_is_stripped_and_works_only_on_ws(stack, http):
    ws = await http.ws_connect(stack.url(f"/ws?clientId=abc&token={stack.token}"))
    first = json.loads((await ws.receive()).data)
    assert first["type"] == "status" and first["data"]["sid"] == "abc"
    # the token stays here; the clientId goes on bound to the account (auth_proxy/ws_filter.py)
    bound = bound_client_id(owner_of(stack.settings, "admin"), "abc")
    assert stack.up_state["last_ws_query"] == {"clientId": bound}
    await ws.close()
    async with http.get(
        stack.url(f"/queue?token={stack.token}"), headers={"Accept": "application/json"}
    ) as r:
        assert r.status == 401


async def test_prompt_runs_and_its_image_is_fetched(stack, http):
    auth = {"Authorization": f"Bearer {stack.token}"}
    ws = await http.ws_connect(stack.url("/ws?clientId=c1"), headers=auth)
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "run/x"}},
    }
    async with http.post(
        stack.url("/api/prompt"), json={"prompt": prompt, "client_id": "c1"}, headers=auth
    ) as r:
        pid = (await r.json())["prompt_id"]
    kinds, binary = [], 0
    while True:
        msg = await asyncio.wait_for(ws.receive(), 10)
        if msg.type == aiohttp.WSMsgType.BINARY:
            binary += 1
            continue
        data = json.loads(msg.data)
        kinds.append(data["type"])
        if data["type"] == "executing" and data["data"]["node"] is None:
            break
    assert kinds[kinds.index("execution_start") :].count("executed") == 1 and "execution_success" in kinds
    assert binary >= 1
    async with http.get(stack.url(f"/history/{pid}"), headers=auth) as r:
        image = (await r.json())[pid]["outputs"]["2"]["images"][0]
    async with http.get(stack.url("/view"), params=image, headers={**auth, "Range": "bytes=0-7"}) as r:
        assert r.status == 206 and await r.read() == b"\x89PNG\r\n\x1a\n"
    await ws.close()


async def test_large_bodies_stream_through_in_bounded_memory(proxy_process):
    proxy, base, token, _log, _env = proxy_process
    auth = {"Authorization": f"Bearer {token}"}
    size = 1 << 30  # 1 GiB down: far more than the proxy may hold
    got = 0
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/_test/stream/{size}", headers=auth) as r:
            assert r.status == 200 and int(r.headers["Content-Length"]) == size
            async for chunk in r.content.iter_chunked(1 << 20):
                got += len(chunk)
        assert got == size

        up_size = 100 * (1 << 20)

        async def body():
            block = b"u" * (1 << 20)
            for _ in range(up_size >> 20):
                yield block

        async with s.post(f"{base}/_test/upload", data=body(), headers=auth) as r:
            assert (await r.json())["received"] == up_size
    assert peak_rss_mb(proxy.pid) < 150, "the proxy buffered a body"


def test_token_cli_and_logs_never_hold_secrets(proxy_process):
    proxy, base, token, log, env = proxy_process
    import base64
    import urllib.error
    import urllib.request

    def get(path, headers):
        req = urllib.request.Request(base + path, headers={"Accept": "application/json", **headers})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    def run(*a):
        return subprocess.run(
            [sys.executable, "-m", "auth_proxy", "token", *a],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
        )

    second = run("create", "script").stdout.strip().splitlines()[-1]
    assert get("/queue", {"Authorization": f"Bearer {second}"}) == 200
    listed = run("list").stdout
    assert "bench" in listed and "script" in listed and second not in listed
    assert run("create", "script").returncode == 4
    assert run("revoke", "script").returncode == 0
    assert get("/queue", {"Authorization": f"Bearer {second}"}) == 401
    assert run("revoke", "script").returncode == 4
    basic = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    assert get("/queue", {"Authorization": f"Basic {basic}"}) == 200
    assert get(f"/ws?clientId=1&token={token}", {}) in (400, 426, 200)
    get("/queue", {"Cookie": "comfy_session=SECRETCOOKIEVALUE"})
    stop_process(proxy)
    text = log.read_text()
    assert "/queue" in text, "the access log is on"
    for secret in (token, second, PASSWORD, basic, "SECRETCOOKIEVALUE"):
        assert secret not in text
    state = "".join(p.read_text() for p in (Path(env["AUTH_PROXY_STATE_DIR"])).iterdir())
    assert token not in state and PASSWORD not in state
    assert all(oct(p.stat().st_mode)[-3:] == "600" for p in Path(env["AUTH_PROXY_STATE_DIR"]).iterdir())
