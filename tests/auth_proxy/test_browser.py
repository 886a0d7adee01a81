"""The login page in a real headless Chromium: log in, land on the app (its WebSocket
connects through the proxy), log out, get bounced back to the login page."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tests.support import CHROMIUM_ARGS, chromium_path
from tests.support.proxy import PASSWORD

pytestmark = pytest.mark.browser


def run_browser(base: str, lang: str, out: dict) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(locale=lang).new_page()
            page.goto(base + "/queue")
            out["login_url"] = page.url
            out["login_title"] = page.title()
            page.fill("#username", "admin")
            page.fill("#password", "wrong-password")
            page.click("button[type=submit]")
            out["error"] = page.text_content("[role=alert]")
            page.fill("#username", "admin")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(base + "/queue")
            page.goto(base + "/")
            page.wait_for_function("document.getElementById('ws').textContent === 'status'", timeout=10000)
            out["app"] = page.text_content("#app")
            # the app's own logout is a same-origin POST
            page.evaluate("fetch('/logout', {method: 'POST'})")
            page.goto(base + "/")
            out["after_logout"] = page.url
        finally:
            browser.close()


@pytest.mark.parametrize(
    "lang,title,error", [("en-US", "Sign in", "Wrong user name"), ("zh-CN", "登录", "用户名或密码错误")]
)
async def test_login_land_logout_bounce(stack, lang, title, error):
    chromium_path()
    out: dict = {}
    # Playwright's sync API wants a thread without a running event loop.
    t = threading.Thread(target=run_browser, args=(f"http://127.0.0.1:{stack.proxy.port}", lang, out))
    t.start()
    while t.is_alive():
        await asyncio.sleep(0.05)
    assert out.get("login_url", "").startswith(f"http://127.0.0.1:{stack.proxy.port}/login?next=/queue"), out
    assert title in out["login_title"] and error in out["error"]
    assert out["app"] == "ComfyUI app"
    assert out["after_logout"].startswith(f"http://127.0.0.1:{stack.proxy.port}/login"), out
