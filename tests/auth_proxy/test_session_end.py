"""When a login ends, whatever is open with it ends too: relayed WebSockets are closed on
token revocation, logout, a password change and session expiry, and ComfyUI's app in a
browser (with the gate's front-end extension) goes to the login page."""

from __future__ import annotations

import asyncio
import os

import aiohttp
import yaml

from auth_proxy.accounts import open_accounts
from auth_proxy.extension import CUSTOM_NODES
from comfyctl import model_paths
from tests.support.browser import in_chromium, sign_in
from tests.support.proxy import PASSWORD, basic, login

CHANGE = {
    "current_password": PASSWORD,
    "new_password": "another-secret-9",
    "repeat_password": "another-secret-9",
}


async def closed_within(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> int | None:
    """The close code if the proxy closes `ws` within `seconds`, else None."""
    try:
        while True:
            msg = await asyncio.wait_for(ws.receive(), seconds)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return ws.close_code
    except asyncio.TimeoutError:
        return None


async def test_revoking_a_token_closes_its_open_websockets(stack):
    async with aiohttp.ClientSession() as s:
        header = await s.ws_connect(
            stack.url("/ws?clientId=a"), headers={"Authorization": f"Bearer {stack.token}"}
        )
        query = await s.ws_connect(stack.url(f"/api/ws?clientId=b&token={stack.token}"))
        other_token = open_accounts(stack.settings).create_token("other")
        other = await s.ws_connect(
            stack.url("/ws?clientId=c"), headers={"Authorization": f"Bearer {other_token}"}
        )
        open_accounts(stack.settings).revoke_token("tests")  # what `token revoke` does, from outside
        assert await closed_within(header, 5) == 4401
        assert await closed_within(query, 5) == 4401
        assert await closed_within(other, 2) is None, "another token's socket stays open"
        await other.close()


async def test_logout_and_a_password_change_close_websockets(stack, http):
    await login(http, stack)
    ws = await http.ws_connect(stack.url("/ws?clientId=a"), headers={"Origin": stack.origin})
    async with http.post(stack.url("/logout"), headers={"Origin": stack.origin}) as r:
        assert r.status == 200
    assert await closed_within(ws, 5) == 4401

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
        await login(http, stack)
        await login(other, stack)
        elsewhere = await other.ws_connect(stack.url("/ws?clientId=b"), headers={"Origin": stack.origin})
        script = await other.ws_connect(
            stack.url("/ws?clientId=c"), headers={"Authorization": basic("admin", PASSWORD)}
        )
        async with http.post(
            stack.url("/_auth/password"), data=CHANGE, headers={"Origin": stack.origin}
        ) as r:
            assert r.status == 200
        assert await closed_within(elsewhere, 5) == 4401
        assert await closed_within(script, 5) == 4401


async def test_an_expired_session_closes_its_websocket(make_stack, http):
    stack = await make_stack(session_hours=2 / 3600)
    await login(http, stack)
    ws = await http.ws_connect(stack.url("/ws?clientId=a"), headers={"Origin": stack.origin})
    assert await closed_within(ws, 8) == 4401


APP_WEB_DIRS = {"comfy_stack_session": CUSTOM_NODES / "comfy_stack_session" / "web"}


def open_app(context, stack):
    page = context.new_page()
    sign_in(page, stack.origin, PASSWORD)
    page.wait_for_function(
        "window.extensionsLoaded && document.getElementById('ws').textContent === 'status'"
    )
    return page


async def test_the_open_app_goes_to_the_login_page_when_the_login_ends(make_stack):
    """Logged out in another tab, the password changed in another browser, the session
    expired: each time the open app lands on the login page, to come back after."""
    stack = await make_stack(web_dirs=APP_WEB_DIRS)
    short = await make_stack(web_dirs=APP_WEB_DIRS, session_hours=4 / 3600)

    def drive(browser):
        seen = {}
        context = browser.new_context()
        page = open_app(context, stack)
        seen["extensions"] = page.evaluate("window.extensions")
        tab = context.new_page()
        tab.goto(stack.url("/login"))
        tab.evaluate("fetch('/logout', {method: 'POST', headers: {Accept: 'application/json'}})")
        page.wait_for_url(stack.url("/login?next=%2F"), timeout=15000)
        seen["after logout elsewhere"] = page.url

        page = open_app(context, stack)
        other = browser.new_context()
        changer = other.new_page()
        sign_in(changer, stack.origin, PASSWORD, "/_auth/password")
        changer.fill("#current_password", PASSWORD)
        changer.fill("#new_password", "another-secret-9")
        changer.fill("#repeat_password", "another-secret-9")
        changer.click("button[type=submit]")
        page.wait_for_url(stack.url("/login?next=%2F"), timeout=15000)
        seen["after a password change elsewhere"] = page.url

        page = open_app(browser.new_context(), short)
        page.wait_for_url(short.url("/login?next=%2F"), timeout=20000)
        seen["after expiry"] = page.url
        return seen

    seen = await in_chromium(drive)
    assert seen["extensions"] == ["comfy-stack.session"]
    assert all(url.endswith("/login?next=%2F") for key, url in seen.items() if key != "extensions"), seen


def test_comfyctl_serve_lists_the_extension_after_the_data_folder(tmp_path):
    """Loaded the way ComfyUI loads extra_model_paths.yaml (each is_default entry inserted
    first, in turn): the data volume's custom_nodes stays first, where ComfyUI-Manager
    installs, and the extension's folder is one of them."""
    nodes = tmp_path / "data" / "custom_nodes"
    dest = model_paths.write(tmp_path / "models", tmp_path / "extra_model_paths.yaml", nodes, CUSTOM_NODES)
    (section,) = yaml.safe_load(dest.read_text()).values()
    folders = ["/opt/ComfyUI/custom_nodes"]
    for entry in section["custom_nodes"].split("\n"):
        folders.insert(0, os.path.join(section["base_path"], entry))
    assert folders == [str(nodes), str(CUSTOM_NODES), "/opt/ComfyUI/custom_nodes"]
    assert (CUSTOM_NODES / "comfy_stack_session" / "web" / "session.js").is_file()
