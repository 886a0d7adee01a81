"""Opt-in tier: the proxy in front of a real ComfyUI on CPU (COMFYUI_DIR, COMFYUI_PYTHON)."""

from __future__ import annotations

import asyncio
import json
import threading

import aiohttp
import pytest

from tests.support import CHROMIUM_ARGS, chromium_path
from tests.support.comfyui import SMOKE_PROMPT
from tests.support.proxy import PASSWORD, add_account

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


async def test_two_members_each_reach_only_their_own_files(comfy, proxy_for):
    """Outputs in output/<name>/, uploads in input/<name>/ (ComfyUI's answer naming it),
    previews in temp/ known by their prompt's owner, LoadImage's list per member: each
    member fetches only their own, as the real ComfyUI serves them."""
    p = await proxy_for(comfy.url, input_dir=comfy.data / "input")
    alice, bob = (add_account(p.settings, name).bearer for name in ("alice", "bob"))
    invert = {k: v for k, v in SMOKE_PROMPT.items() if k != "3"}
    invert["4"] = {**invert["4"], "inputs": {**invert["4"]["inputs"], "images": ["2", 0]}}
    preview = {"1": SMOKE_PROMPT["1"], "5": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}

    async with aiohttp.ClientSession() as s:

        async def run(auth: dict, prompt: dict, node: str) -> dict:
            async with s.post(p.url("/prompt"), json={"prompt": prompt}, headers=auth) as r:
                assert r.status == 200, await r.text()
                pid = (await r.json())["prompt_id"]
            for _ in range(600):
                async with s.get(p.url(f"/history/{pid}"), headers=auth) as r:
                    entry = (await r.json()).get(pid)
                if entry:
                    assert entry["status"]["status_str"] == "success", entry["status"]
                    return entry["outputs"][node]["images"][0]
                await asyncio.sleep(0.1)
            raise AssertionError("the prompt did not finish")

        async def view(auth: dict, ref: dict) -> tuple[int, bytes]:
            async with s.get(p.url("/view"), params=ref, headers=auth) as r:
                return r.status, await r.read()

        mine, theirs = await run(alice, invert, "4"), await run(bob, invert, "4")
        assert mine["subfolder"] == "alice/smoke" and theirs["subfolder"] == "bob/smoke"
        assert (comfy.data / "output" / "alice" / "smoke" / mine["filename"]).is_file()
        status, png = await view(alice, mine)
        assert status == 200 and png.startswith(b"\x89PNG")
        missing = await view(bob, {**mine, "filename": "none.png", "subfolder": "bob"})
        assert missing[0] == 404 and await view(bob, mine) == missing
        assert (await view(bob, theirs))[0] == 200

        shown = await run(alice, preview, "5")
        assert shown["type"] == "temp"
        assert (await view(alice, shown))[0] == 200 and await view(bob, shown) == missing

        form = aiohttp.FormData()
        form.add_field("image", png, filename="mine.png", content_type="image/png")
        async with s.post(p.url("/upload/image"), data=form, headers=alice) as r:
            assert r.status == 200 and await r.json() == {
                "name": "mine.png",
                "subfolder": "alice",
                "type": "input",
            }
        assert (comfy.data / "input" / "alice" / "mine.png").read_bytes() == png
        for auth, listed in ((alice, True), (bob, False)):
            async with s.get(p.url("/object_info/LoadImage"), headers=auth) as r:
                choices, options = (await r.json())["LoadImage"]["input"]["required"]["image"]
            assert ("alice/mine.png" in choices) is listed and options.get("image_upload") is True
        assert (await view(bob, {"filename": "mine.png", "type": "input", "subfolder": "alice"}))[0] == 404
