"""A member's workflow is checked at the gate before ComfyUI sees it (comfy_jobs/member_policy.py):
another person's files and nodes that reach any path are refused with 403; an admin's is not."""

from __future__ import annotations

import aiohttp
import pytest

from tests.support.proxy import add_account

SAVE = {"9": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}


@pytest.mark.parametrize(
    "node",
    [
        {"class_type": "LoadImage", "inputs": {"image": "bob/cat.png"}},
        {"class_type": "LoadImage", "inputs": {"image": "bob/x_00001_.png [output]"}},
        {"class_type": "LoadImage", "inputs": {"image": "../../etc/passwd"}},
        {"class_type": "VHS_LoadVideoPath", "inputs": {"video": "/etc/passwd"}},
    ],
)
async def test_a_members_graph_that_reaches_beyond_their_files_is_refused(stack, node):
    alice = add_account(stack.settings, "alice")
    body = {"prompt": {"1": node, **SAVE}, "client_id": "c"}
    async with aiohttp.ClientSession() as s:
        async with s.post(stack.url("/prompt"), json=body, headers=alice.bearer) as r:
            answer = await r.json()
            assert r.status == 403 and answer["error"]["type"] == "invalid_prompt"
            assert "node 1" in answer["error"]["message"]
        async with s.get(stack.url("/queue"), headers={"Authorization": f"Bearer {stack.token}"}) as r:
            queue = await r.json()
            assert queue["queue_pending"] == [] and queue["queue_running"] == [], "nothing reached ComfyUI"


async def test_a_members_own_files_pass_and_an_admin_is_not_checked(stack):
    alice = add_account(stack.settings, "alice")
    mine = {"prompt": {"1": {"class_type": "LoadImage", "inputs": {"image": "alice/cat.png"}}, **SAVE}}
    anything = {"prompt": {"1": {"class_type": "LoadImage", "inputs": {"image": "bob/cat.png"}}, **SAVE}}
    async with aiohttp.ClientSession() as s:
        async with s.post(stack.url("/prompt"), json=mine, headers=alice.bearer) as r:
            assert r.status != 403, await r.text()
        async with s.post(
            stack.url("/prompt"), json=anything, headers={"Authorization": f"Bearer {stack.token}"}
        ) as r:
            assert r.status != 403, await r.text()


async def test_a_prompt_nested_deeper_than_python_can_parse_is_a_clear_400(stack):
    alice = add_account(stack.settings, "alice")
    deep = b'{"prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    async with aiohttp.ClientSession() as s:
        async with s.post(
            stack.url("/prompt"), data=deep, headers={**alice.bearer, "Content-Type": "application/json"}
        ) as r:
            assert r.status == 400 and "JSON" in (await r.json())["error"]
