"""Driving Debian's Chromium with Playwright from async tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

from tests.support import CHROMIUM_ARGS, chromium_path

T = TypeVar("T")


async def in_chromium(drive: Callable[..., T], *extra_args: str, timeout: float = 120) -> T:
    """Run `drive(browser)` in a headless Chromium and return what it returns.

    Playwright's sync API wants a thread without a running event loop, and the servers
    under test run on this loop, so the browser runs in a thread while the loop keeps
    serving. `extra_args` go to Chromium (e.g. --host-resolver-rules to give loopback
    servers other site names).
    """
    path = chromium_path()
    result: dict = {}

    def run() -> None:
        from playwright.sync_api import sync_playwright

        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=path, args=[*CHROMIUM_ARGS, *extra_args])
                try:
                    result["value"] = drive(browser)
                finally:
                    browser.close()
        except BaseException as exc:  # noqa: BLE001 - handed to the test below
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while thread.is_alive():
        if loop.time() > deadline:
            raise TimeoutError(f"the browser did not finish within {timeout} s")
        await asyncio.sleep(0.05)
    if "error" in result:
        raise result["error"]
    return result["value"]


def sign_in(page, base: str, password: str, path: str = "/") -> None:
    """Open `base + path` in `page` (Playwright's sync API); when the gate's login page
    answers instead, sign in as the admin and wait to be back at `path`."""
    page.goto(base + path)
    if "/login" in page.url:
        page.fill("#username", "admin")
        page.fill("#password", password)
        page.click("button[type=submit]")
        page.wait_for_url(base + path)
