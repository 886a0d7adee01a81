"""Opt-in tier: the proxy in front of a real ComfyUI on CPU (COMFYUI_DIR, COMFYUI_PYTHON)."""

from __future__ import annotations

import asyncio
import json
import threading

import aiohttp
import pytest

from tests.support import CHROMIUM_ARGS, chromium_path
from tests.support.comfyui import SMOKE_PROMPT
from tests.support.proxy import PASSWORD

pytestmark = pytest.mark.comfyui


@pytest.fixture
async def proxy(comfy, proxy_for):
    p = await proxy_for(comfy.url)
    return p.origin, p.token


async def test_smoke_workflow_through_the_proxy_with_a_token(comfy, proxy):
    base, token = proxy
    auth = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(f"{base}/ws?clientId=optin", headers=auth)
        # a browser-like Origin on a token request: ComfyUI's own origin check must still pass
        async with s.post(
            f"{base}/prompt",
            json={"prompt": SMOKE_PROMPT, "client_id": "optin"},
            headers={**auth, "Origin": "https://comfy.example.com"},
        ) as r:
            assert r.status == 200, await r.text()
            pid = (await r.json())["prompt_id"]
        kinds = []
        while True:
            msg = await asyncio.wait_for(ws.receive(), 60)
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            kinds.append(data["type"])
            if (
                data["type"] == "executing"
                and data["data"].get("node") is None
                and data["data"].get("prompt_id") == pid
            ):
                break
            assert data["type"] != "execution_error", data
        assert "execution_start" in kinds and "executed" in kinds
        await ws.close()
        async with s.get(f"{base}/api/history/{pid}", headers=auth) as r:
            image = (await r.json())[pid]["outputs"]["4"]["images"][0]
        async with s.get(f"{base}/view", params=image, headers=auth) as r:
            png = await r.read()
        assert r.status == 200 and png.startswith(b"\x89PNG")
        assert (comfy.data / "output" / image["subfolder"] / image["filename"]).read_bytes() == png
        async with s.get(f"{base}/system_stats", headers={"Accept": "application/json"}) as r:
            assert r.status == 401


async def test_ui_loads_through_the_proxy_in_chromium(proxy):
    base, _ = proxy
    chromium_path()
    out: dict = {}

    def drive():
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            try:
                page = b.new_page()
                page.goto(base + "/")
                page.fill("#username", "admin")
                page.fill("#password", PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_url(base + "/")
                # the front end draws its graph canvas once its scripts and /ws are up
                page.wait_for_selector("canvas", timeout=60000)
                out["title"] = page.title()
            finally:
                b.close()

    t = threading.Thread(target=drive)
    t.start()
    while t.is_alive():
        await asyncio.sleep(0.1)
    assert "ComfyUI" in out.get("title", ""), out
