"""Opt-in tier: ComfyUI's own front end in Chromium, through the gate and directly.

The workflow sidebar is driven the way a person uses it (open a bundled workflow, run it,
save it, rename it, delete it), once through the proxy and once against ComfyUI itself from
the same starting files, and every userdata call the front end made is compared: method,
path, status and body. Then the open app meets an ended login and lands on the login page.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError

from tests.support import REPO
from tests.support.browser import in_chromium, sign_in
from tests.support.proxy import PASSWORD

pytestmark = [pytest.mark.comfyui, pytest.mark.browser]
WORKFLOW = "smoke.json"


@pytest.fixture
async def gate(comfy, proxy_for):
    async def start(**overrides) -> str:
        return (await proxy_for(comfy.url, **overrides)).origin

    return start


def fresh_user_dir(comfy) -> None:
    """The user folder of someone who has used the app before (so that the first-visit
    template browser stays closed), with the bundled workflow as comfyctl serve installs it."""
    user = comfy.data / "user" / "default"
    shutil.rmtree(user, ignore_errors=True)
    (user / "workflows").mkdir(parents=True)
    shutil.copy(REPO / "workflows" / "ui" / WORKFLOW, user / "workflows" / WORKFLOW)
    (user / "comfy.settings.json").write_text(json.dumps({"Comfy.TutorialCompleted": True}))


def normalised(body: bytes):
    """A response body with the file times taken out (they differ from run to run)."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")

    def strip(value):
        if isinstance(value, dict):
            return {k: "<time>" if k in ("modified", "created") else strip(v) for k, v in value.items()}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(data)


def log_in_if_asked(page, base: str) -> None:
    sign_in(page, base, PASSWORD)
    page.wait_for_selector("canvas", timeout=120_000)
    page.wait_for_function("window.comfyAPI && window.comfyAPI.app.app.extensionManager", timeout=60_000)


def use_the_sidebar(browser, base: str, outputs: Path) -> list:
    """Open, run, save, rename and delete a workflow in the sidebar; the userdata calls seen."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    calls = []

    def seen(r):
        if "/userdata" not in r.url:
            return
        path = re.sub(r"^https?://[^/]+", "", r.url)
        try:
            body = normalised(r.body()) if r.status not in (204, 304) else ""
        except PlaywrightError:  # Chromium keeps no body for a stylesheet it did not load
            body = "<not kept by the browser>"
        calls.append((r.request.method, path, r.status, body))

    page.on("response", seen)
    log_in_if_asked(page, base)
    page.click("button.workflows-tab-button")
    item = page.locator(".p-tree-node-label", has_text=WORKFLOW)
    with page.expect_response(
        lambda r: r.request.method == "GET" and "userdata/workflows%2Fsmoke.json" in r.url
    ):
        item.click()
    page.wait_for_timeout(1000)  # the graph is drawn from it
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/api/prompt")
    ) as queued:
        page.click("button:has-text('Run')")
    prompt_id = queued.value.json()["prompt_id"]
    # Done when ComfyUI's history says so (a second run of the same graph is served from
    # its cache and writes no new file).
    page.wait_for_function(
        """async (id) => {
        const entry = (await (await fetch('/api/history/' + id)).json())[id];
        return entry && entry.status && entry.status.status_str === 'success';
    }""",
        arg=prompt_id,
        timeout=120_000,
        polling=500,
    )
    ran = any(outputs.rglob("smoke_*.png"))
    with page.expect_response(
        lambda r: r.request.method == "POST" and "userdata/workflows%2Fsmoke.json" in r.url
    ):
        page.keyboard.press("Control+s")
    item.click(button="right")
    page.click("[role=menuitem]:has-text('Rename')")
    field = page.locator(".p-tree input.p-inputtext")
    field.fill("renamed smoke")
    with page.expect_response(lambda r: "/move/" in r.url):
        field.press("Enter")
    page.locator(".p-tree-node-label", has_text="renamed smoke").click(button="right")
    page.click("[role=menuitem]:has-text('Delete')")
    with page.expect_response(lambda r: r.request.method == "DELETE"):
        page.click(".p-dialog button:has-text('Delete')")
    page.wait_for_load_state("networkidle")
    page.close()
    return [ran, calls]


async def test_the_workflow_sidebar_works_through_the_gate_as_it_does_directly(comfy, gate):
    base = await gate()
    outputs = comfy.data / "output"
    fresh_user_dir(comfy)
    ran_through, through = await in_chromium(lambda b: use_the_sidebar(b, base, outputs), timeout=600)
    fresh_user_dir(comfy)
    ran_direct, direct = await in_chromium(lambda b: use_the_sidebar(b, comfy.url, outputs), timeout=600)
    print("userdata calls through the gate:", *[c[:3] for c in through], sep="\n  ")
    # the same calls in the same order for each path (calls to different files may interleave)
    key = lambda call: (call[0], call[1])  # noqa: E731
    assert sorted(through, key=key) == sorted(direct, key=key)
    wanted = {
        ("GET", "/api/userdata/workflows%2Fsmoke.json", 200),
        ("POST", "/api/userdata/workflows%2Fsmoke.json?overwrite=true&full_info=true", 200),
        (
            "POST",
            "/api/userdata/workflows%2Fsmoke.json/move/workflows%2Frenamed%20smoke.json?overwrite=false",
            200,
        ),
        ("DELETE", "/api/userdata/workflows%2Frenamed%20smoke.json", 204),
    }
    assert wanted <= {c[:3] for c in through}
    assert ran_through and ran_direct, "Run produced the smoke workflow's image"
    assert not (comfy.data / "user" / "default" / "workflows" / WORKFLOW).exists()


def open_app(context, base):
    """The app, loaded: the gate's extension registered and the WebSocket open."""
    page = context.new_page()
    log_in_if_asked(page, base)
    page.wait_for_function(
        """() => {
        const {app, api} = window.comfyAPI;
        return app.app.extensions.some((e) => e.name === 'comfy-stack.session')
            && api.api.socket && api.api.socket.readyState === WebSocket.OPEN;
    }""",
        timeout=60_000,
    )
    return page


async def test_the_app_goes_to_the_login_page_after_a_logout_elsewhere(comfy, gate):
    """ComfyUI's front end with the gate's extension, logged out in another tab: the open
    app lands on the login page, not on a "login required" dialog at the next Run."""
    base = await gate()
    fresh_user_dir(comfy)

    def drive(browser):
        context = browser.new_context()
        page = open_app(context, base)
        other = context.new_page()
        other.goto(base + "/login")
        other.evaluate("fetch('/logout', {method: 'POST', headers: {Accept: 'application/json'}})")
        page.wait_for_url(base + "/login?next=%2F", timeout=30_000)
        return page.url

    assert await in_chromium(drive, timeout=600) == base + "/login?next=%2F"


async def test_the_app_goes_to_the_login_page_when_the_session_expires(comfy, gate):
    short = await gate(session_hours=20 / 3600)
    fresh_user_dir(comfy)

    def drive(browser):
        page = open_app(browser.new_context(), short)
        at_app = page.url
        page.wait_for_url(short + "/login?next=%2F", timeout=60_000)
        return at_app, page.url

    assert await in_chromium(drive, timeout=600) == (short + "/", short + "/login?next=%2F")
