"""Each member's workflows and settings through ComfyUI's --multi-user mode (the stand-in runs
as ComfyUI does with it): the gate sets the user from the login, whatever the client sends,
and the admin keeps ComfyUI's default user."""

from __future__ import annotations

import json

from yarl import URL

from auth_proxy.accounts import open_accounts
from tests.support.native import get_json, owner_of
from tests.support.proxy import add_account


async def test_a_members_files_and_settings_are_their_own(team, http):
    stack, alice, bob, admin = team
    workflow = "/api/userdata/workflows%2Fmine.json"
    async with http.post(URL(stack.url(workflow), encoded=True), data=b'{"a": 1}', headers=alice.bearer) as r:
        assert r.status == 200, await r.text()
    users = json.loads((stack.tmp / "user" / "users.json").read_text())
    alice_id = next(uid for uid, name in users.items() if name == owner_of(stack.settings, "alice"))
    assert (stack.tmp / "user" / alice_id / "workflows" / "mine.json").read_bytes() == b'{"a": 1}'
    # bob, even naming alice's ComfyUI user himself, reads his own (empty) folder
    for headers in (bob.bearer, {**bob.bearer, "Comfy-User": alice_id}, {**admin, "Comfy-User": alice_id}):
        async with http.get(URL(stack.url(workflow), encoded=True), headers=headers) as r:
            assert r.status == 404
    async with http.get(URL(stack.url(workflow), encoded=True), headers=alice.bearer) as r:
        assert r.status == 200 and await r.read() == b'{"a": 1}'
    async with http.post(stack.url("/settings"), json={"Comfy.Theme": "dark"}, headers=alice.bearer) as r:
        assert r.status == 200
    assert await get_json(http, stack.url("/settings"), bob.bearer) == {}
    assert await get_json(http, stack.url("/api/settings"), alice.bearer) == {"Comfy.Theme": "dark"}
    # the admin keeps ComfyUI's default user (an installation's existing workflows)
    (stack.up_state["user"] / "workflows").mkdir(parents=True)
    (stack.up_state["user"] / "workflows" / "old.json").write_text("{}")
    old = "/api/userdata/workflows%2Fold.json"
    async with http.get(URL(stack.url(old), encoded=True), headers=admin) as r:
        assert r.status == 200
    async with http.get(URL(stack.url(old), encoded=True), headers=alice.bearer) as r:
        assert r.status == 404
    # no user-selection screen, and no users made by clients
    for headers in (alice.bearer, admin):
        assert await get_json(http, stack.url("/api/users"), headers) == {
            "storage": "server",
            "migrated": True,
        }
    async with http.post(stack.url("/users"), json={"username": "mallory"}, headers=bob.bearer) as r:
        assert r.status == 403
    assert "mallory" not in json.dumps(json.loads((stack.tmp / "user" / "users.json").read_text()))


async def test_an_account_made_again_under_an_old_name_starts_with_no_files(team, http):
    stack, alice, _bob, _admin = team
    workflow = URL(stack.url("/userdata/workflows%2Fmine.json"), encoded=True)
    async with http.post(workflow, data=b"{}", headers=alice.bearer) as r:
        assert r.status == 200
    accounts = open_accounts(stack.settings)
    try:
        accounts.delete("alice")
    finally:
        accounts.close()
    again = add_account(stack.settings, "alice")
    async with http.get(workflow, headers=again.bearer) as r:
        assert r.status == 404
