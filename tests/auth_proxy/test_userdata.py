"""Workflow files through the gate: the front end names them with the slash encoded
(`/api/userdata/workflows%2Fsmoke.json`), and they open, save, rename and delete through
the proxy exactly as they do against ComfyUI directly."""

from __future__ import annotations

import json

import aiohttp
import pytest
from yarl import URL

from tests.support.proxy import login

WORKFLOW = json.dumps({"last_node_id": 1, "nodes": [{"id": 1, "type": "EmptyImage"}]}).encode()

# What the sidebar does, in order: save, open, rename, open the new name, open the old,
# list, delete, delete again; and the decoded spelling, which names no ComfyUI route.
SEQUENCE = [
    ("POST", "{p}/userdata/workflows%2Fsmoke.json?overwrite=true&full_info=false", WORKFLOW),
    ("GET", "{p}/userdata/workflows%2Fsmoke.json", None),
    ("GET", "{p}/userdata/workflows/smoke.json", None),
    ("POST", "{p}/userdata/workflows%2Fsmoke.json/move/workflows%2Frenamed%20one.json?overwrite=false", None),
    ("GET", "{p}/userdata/workflows%2Frenamed%20one.json", None),
    ("GET", "{p}/userdata/workflows%2Fsmoke.json", None),
    ("GET", "{p}/userdata?dir=workflows&recurse=true", None),
    ("DELETE", "{p}/userdata/workflows%2Frenamed%20one.json", None),
    ("DELETE", "{p}/userdata/workflows%2Frenamed%20one.json", None),
]


async def run_sequence(session: aiohttp.ClientSession, base: str, prefix: str, headers: dict) -> list:
    seen = []
    for method, path, body in SEQUENCE:
        url = URL(base + path.format(p=prefix), encoded=True)  # sent exactly as written
        async with session.request(method, url, data=body, headers=headers) as r:
            seen.append((method, path, r.status, await r.read()))
    return seen


@pytest.mark.parametrize("prefix", ["/api", ""])
@pytest.mark.parametrize("how", ["bearer", "cookie"])
async def test_workflow_files_behave_as_they_do_directly(stack, http, how, prefix):
    if how == "cookie":
        await login(http, stack)
        headers = {"Origin": stack.origin}  # what the front end's fetch sends
    else:
        headers = {"Authorization": f"Bearer {stack.token}"}
    through = await run_sequence(http, stack.url(""), prefix, headers)
    async with aiohttp.ClientSession() as direct_session:
        direct = await run_sequence(direct_session, f"http://127.0.0.1:{stack.upstream.port}", prefix, {})
    assert [s[2] for s in direct] == [200, 200, 404, 200, 200, 404, 200, 204, 404], direct
    assert through == direct
    assert through[1][3] == WORKFLOW and json.loads(through[6][3]) == ["renamed one.json"]
