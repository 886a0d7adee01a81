"""Opt-in tier: two members and the admin through the gate in front of a real ComfyUI run with
--multi-user, as comfyctl serve runs it (COMFYUI_DIR, COMFYUI_PYTHON): each sees only their
own queue, history, WebSocket messages and workflows, and ComfyUI's own front end works for
a member (no user-selection screen; a queued prompt's messages and result reach the page)."""

from __future__ import annotations

import copy
import json

import aiohttp
import pytest
from yarl import URL

from auth_proxy.ownership import OWNER
from tests.support import REPO
from tests.support.browser import in_chromium
from tests.support.comfyui import SMOKE_PROMPT
from tests.support.native import Heard, get_json, listen_until, owner_of, queue

pytestmark = pytest.mark.comfyui


def smoke(value: int) -> dict:
    """The smoke workflow with its own colour, so that ComfyUI's cache runs each anew."""
    prompt = copy.deepcopy(SMOKE_PROMPT)
    for node in prompt.values():
        if node["class_type"] == "EmptyImage":
            node["inputs"]["color"] = value
    return prompt


async def test_two_members_each_see_and_hear_only_their_own(real_team, comfy_teams):
    p, alice, bob, admin = real_team
    async with aiohttp.ClientSession() as s:
        a_ws = await s.ws_connect(p.url("/ws?clientId=tab"), headers=alice.bearer)
        b_ws = await s.ws_connect(p.url("/ws?clientId=tab"), headers=bob.bearer)  # the same clientId
        a1 = await queue(s, p.url(""), alice.bearer, smoke(1), client_id="tab")
        b1 = await queue(s, p.url(""), bob.bearer, smoke(2), client_id="tab")
        a_heard, b_heard = Heard(), Heard()
        await listen_until(b_ws, b_heard, b1, timeout=120)
        await listen_until(a_ws, a_heard, a1, timeout=120)
        assert a_heard.messages[0]["data"]["sid"] == "tab" and b_heard.messages[0]["data"]["sid"] == "tab"
        assert a_heard.prompt_ids() == {a1} and b_heard.prompt_ids() == {b1}
        assert "executed" in a_heard.types(a1) and "executed" in b_heard.types(b1)
        # ComfyUI keeps the owner the gate wrote in the prompt's extra_data
        direct = await get_json(s, f"{comfy_teams.url}/history/{a1}", {})
        assert direct[a1]["prompt"][3][OWNER] == owner_of(p.settings, "alice")
        assert set(await get_json(s, p.url("/api/history"), alice.bearer)) == {a1}
        assert set(await get_json(s, p.url("/history"), bob.bearer)) == {b1}
        assert {a1, b1} <= set(await get_json(s, p.url("/history"), admin))
        assert await get_json(s, p.url(f"/history/{a1}"), bob.bearer) == {}
        assert await get_json(s, p.url("/queue"), bob.bearer) == {"queue_running": [], "queue_pending": []}
        async with s.post(p.url("/history"), json={"clear": True}, headers=bob.bearer) as r:
            assert r.status == 200
        assert set(await get_json(s, p.url("/history"), alice.bearer)) == {a1}
        for ws in (a_ws, b_ws):
            await ws.close()


async def test_members_workflows_are_their_own_in_comfyuis_multi_user_mode(real_team, comfy_teams):
    p, alice, bob, admin = real_team
    path = URL(p.url("/api/userdata/workflows%2Falice.json"), encoded=True)
    async with aiohttp.ClientSession() as s:
        async with s.post(path, data=b'{"nodes": []}', headers=alice.bearer) as r:
            assert r.status == 200, await r.text()
        async with s.get(path, headers=alice.bearer) as r:
            assert r.status == 200 and await r.read() == b'{"nodes": []}'
        users = json.loads((comfy_teams.data / "user" / "users.json").read_text())
        alice_id = next(uid for uid, name in users.items() if name == owner_of(p.settings, "alice"))
        for headers in (bob.bearer, {**bob.bearer, "Comfy-User": alice_id}, admin):
            async with s.get(path, headers=headers) as r:
                assert r.status == 404
        assert (comfy_teams.data / "user" / alice_id / "workflows" / "alice.json").is_file()
        assert await get_json(s, p.url("/api/users"), bob.bearer) == {"storage": "server", "migrated": True}
        async with s.get(p.url("/api/manager/queue/status"), headers=bob.bearer) as r:
            assert r.status == 403


def run_as_member(browser, base: str, name: str, password: str) -> dict:
    """Log in as `name`, open their smoke workflow in ComfyUI's own app and run it; what the
    page's API heard, and the history the page sees."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    seen: list = []
    page.on("console", lambda m: seen.append(("console", m.type, m.text[:300])))
    page.on(
        "response",
        lambda r: seen.append(
            (
                "response",
                r.request.method,
                r.url[-60:],
                r.status,
                r.text()[:600] if "/prompt" in r.url else "",
            )
        ),
    )
    page.goto(base + "/")
    page.fill("#username", name)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
    page.wait_for_selector("canvas", timeout=120_000)
    page.wait_for_function(
        # the app's setup has ended (its node types are registered) and its socket is open
        "window.comfyAPI && window.comfyAPI.app.app.extensionManager && window.comfyAPI.api.api.socket"
        " && window.comfyAPI.api.api.socket.readyState === WebSocket.OPEN",
        timeout=60_000,
    )
    page.evaluate(
        """() => {
        const {api} = window.comfyAPI.api;
        window.heard = [];
        for (const type of ["execution_start", "executing", "executed", "execution_success"])
            api.addEventListener(type, (e) => window.heard.push([type, e.detail]));
    }"""
    )
    # as a person does: open the workflow from the sidebar (their own folder), press Run
    page.click("button.workflows-tab-button")
    with page.expect_response(
        lambda r: r.request.method == "GET" and "userdata/workflows%2Fsmoke.json" in r.url
    ):
        page.locator(".p-tree-node-label", has_text="smoke.json").click()
    page.wait_for_timeout(1000)  # the graph is drawn from it
    page.click("button:has-text('Run')")
    try:
        page.wait_for_function(
            "window.heard.some(([t]) => t === 'execution_success')", timeout=60_000, polling=200
        )
    except Exception:
        print(*[x for x in seen if "prompt" in str(x) or x[0] == "console"][-30:], sep="\n")
        print(page.evaluate("window.heard"))
        raise
    out = page.evaluate(
        """async () => ({heard: window.heard.map(([t, d]) => [t, d && d.prompt_id !== undefined ? d.prompt_id
            : (typeof d === 'string' ? null : d)]),
            history: await (await fetch('/api/history')).json()})"""
    )
    out["url"] = page.url
    page.close()
    return out


async def test_a_member_runs_a_workflow_in_comfyuis_own_front_end(real_team):
    # alice: an account named as the earlier tests' alice (another gate's), whose runs
    # ComfyUI still holds: they are not hers
    p, alice, bob, _admin = real_team
    ui = (REPO / "workflows" / "ui" / "smoke.json").read_bytes()
    async with aiohttp.ClientSession() as s:
        await queue(s, p.url(""), bob.bearer, smoke(3), client_id="elsewhere")  # bob's run, in the history
        for name, who in (("settings", "Comfy.TutorialCompleted"),):  # no first-visit template browser
            async with s.post(p.url(f"/api/{name}"), json={who: True}, headers=alice.bearer) as r:
                assert r.status == 200
        wf = URL(p.url("/api/userdata/workflows%2Fsmoke.json"), encoded=True)
        async with s.post(wf, data=ui, headers=alice.bearer) as r:
            assert r.status == 200
    out = await in_chromium(lambda b: run_as_member(b, p.origin, "alice", alice.password), timeout=300)
    assert "user-select" not in out["url"], "ComfyUI's user-selection screen was shown"
    runs = {pid for t, pid in out["heard"] if t == "execution_success"}
    assert len(runs) == 1, out["heard"]
    [run] = runs
    assert set(out["history"]) == {run}  # her history, not bob's
    assert out["history"][run]["status"]["status_str"] == "success"
    assert any(o.get("images") for o in out["history"][run]["outputs"].values())
