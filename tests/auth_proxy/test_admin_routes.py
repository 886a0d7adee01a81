"""The admin's routes (ComfyUI-Manager, /free, ComfyUI's log, /metrics, the model sync)
through the gate: a member's token gets 403 and nothing reaches ComfyUI; the admin reaches
them, and changes to the installed nodes are written in the audit log."""

from __future__ import annotations

import json

import pytest

from auth_proxy.access import ADMIN_RELAYED
from tests.support import fake_comfyui

ADMIN_ROUTES = [
    ("GET", "/manager/reboot"),
    ("GET", "/api/manager/queue/update_all"),
    ("POST", "/manager/queue/install"),
    ("GET", "/manager/queue/status"),
    ("POST", "/customnode/install/git_url"),
    ("GET", "/api/customnode/getlist"),
    ("GET", "/externalmodel/getlist"),
    ("GET", "/snapshot/restore?target=x"),
    ("GET", "/comfyui_manager/comfyui_switch_version?ver=1"),
    ("GET", "/v2/manager/queue/status"),
    ("GET", "/api/v2/customnode/installed"),
    ("GET", "/Manager/Reboot"),
    ("POST", "/free"),
    ("POST", "/api/free"),
    ("GET", "/internal/logs"),
    ("GET", "/internal/logs/raw"),
    ("GET", "/metrics"),
    ("GET", "/_models/sync"),
    ("POST", "/_models/sync"),
]


@pytest.mark.parametrize("method,path", ADMIN_ROUTES, ids=[f"{m} {p}" for m, p in ADMIN_ROUTES])
async def test_a_members_token_gets_403_on_the_admins_routes(team, http, method, path):
    stack, _alice, bob, _admin = team
    async with http.request(method, stack.url(path), headers=bob.bearer, json={}) as r:
        assert r.status == 403
        assert "only an admin" in (await r.json())["error"]
    assert not any(ADMIN_RELAYED.match(p) for p in stack.up_state["hits"])


async def test_the_admin_reaches_manager_and_node_changes_are_audited(team, http):
    stack, _alice, _bob, admin = team
    for path in fake_comfyui.MANAGER_GET_ACTIONS[:3]:
        async with http.get(stack.url(path), headers=admin) as r:
            assert r.status == 200
    async with http.get(stack.url("/metrics"), headers=admin) as r:
        assert r.status == 200
    entries = [json.loads(line) for line in (stack.settings.state_dir / "audit.log").read_text().splitlines()]
    nodes = [e["path"] for e in entries if e["event"] == "nodes"]
    assert nodes == ["/manager/queue/update_all", "/manager/queue/start"]
    assert all(e["user"] == "admin" for e in entries if e["event"] == "nodes")
