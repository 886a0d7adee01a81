"""Two members and the admin on ComfyUI's native queue, history and WebSocket through the
gate: each member sees, changes and hears only their own prompts, and has a limit of waiting
prompts; the admin sees all.
(Their files: test_member_files.py; the admin's routes: test_admin_routes.py.)"""

from __future__ import annotations

import asyncio
import json

import aiohttp

from auth_proxy.accounts import open_accounts
from auth_proxy.ownership import OWNER
from auth_proxy.ws_filter import bound_client_id
from tests.support.native import PROMPT, Heard, get_json, listen_until, owner_of, queue
from tests.support.proxy import add_account


async def held(stack):
    """Hold the stand-in's runner: what is queued now stays waiting."""
    await stack.up_state["run_lock"].acquire()


async def finished(stack, *prompt_ids: str) -> None:
    async def wait() -> None:
        while not all(p in stack.up_state["history"] for p in prompt_ids):
            await asyncio.sleep(0.02)

    await asyncio.wait_for(wait(), 30)


def pending_ids(answer: dict) -> set[str]:
    return {item[1] for item in answer["queue_pending"] + answer["queue_running"]}


async def test_each_prompt_carries_its_owner_whatever_the_client_wrote(team, http):
    stack, alice, _bob, _admin = team
    await held(stack)
    pid = await queue(
        http, stack.url(""), alice.bearer, client_id="tab", extra_data={OWNER: "bob", "client_id": "x"}
    )
    extra = stack.up_state["items"][pid][3]
    alice_key = owner_of(stack.settings, "alice")
    assert extra[OWNER] == alice_key and extra["client_id"] == bound_client_id(alice_key, "tab")
    assert alice_key.startswith("alice.")


async def test_a_member_sees_only_their_own_queue_and_history(team, http):
    stack, alice, bob, admin = team
    await held(stack)
    a1 = await queue(http, stack.url(""), alice.bearer)
    a2 = await queue(http, stack.url("/api"), alice.bearer)
    b1 = await queue(http, stack.url(""), bob.bearer)
    x1 = await queue(http, stack.url(""), admin)
    for path in ("/queue", "/api/queue"):
        assert pending_ids(await get_json(http, stack.url(path), alice.bearer)) == {a1, a2}
        assert pending_ids(await get_json(http, stack.url(path), bob.bearer)) == {b1}
        assert pending_ids(await get_json(http, stack.url(path), admin)) == {a1, a2, b1, x1}
    stack.up_state["run_lock"].release()
    await finished(stack, a1, a2, b1, x1)
    assert set(await get_json(http, stack.url("/history"), alice.bearer)) == {a1, a2}
    assert set(await get_json(http, stack.url("/api/history?max_items=1"), alice.bearer)) == {a2}
    assert set(await get_json(http, stack.url("/history?max_items=5&offset=1"), alice.bearer)) == {a2}
    assert set(await get_json(http, stack.url("/history"), admin)) == {a1, a2, b1, x1}
    # another's prompt id is answered exactly as one that does not exist
    for path in (f"/history/{a1}", f"/api/history/{a1}", f"/history/{x1}", "/history/no-such-prompt"):
        async with http.get(stack.url(path), headers=bob.bearer) as r:
            assert (r.status, await r.json()) == (200, {})
    assert set(await get_json(http, stack.url(f"/history/{a1}"), alice.bearer)) == {a1}
    assert set(await get_json(http, stack.url(f"/history/{b1}"), admin)) == {b1}


async def test_a_members_deletes_and_clears_touch_only_their_own(team, http):
    stack, alice, bob, admin = team
    await held(stack)
    a1 = await queue(http, stack.url(""), alice.bearer)
    b1, b2 = [await queue(http, stack.url(""), bob.bearer) for _ in range(2)]
    async with http.post(stack.url("/queue"), json={"delete": [a1, b1]}, headers=bob.bearer) as r:
        assert r.status == 200
    async with http.post(stack.url("/api/queue"), json={"clear": True}, headers=bob.bearer) as r:
        assert r.status == 200
    assert stack.up_state["queue"] == [a1] and {b1, b2} <= stack.up_state["deleted"]
    b3 = await queue(http, stack.url(""), bob.bearer)
    stack.up_state["run_lock"].release()
    await finished(stack, a1, b3)
    for body in ({"delete": [a1]}, {"clear": True}):
        async with http.post(stack.url("/history"), json=body, headers=bob.bearer) as r:
            assert r.status == 200
    assert set(stack.up_state["history"]) == {a1}
    async with http.post(stack.url("/history"), json={"clear": True}, headers=admin) as r:
        assert r.status == 200
    assert stack.up_state["history"] == {}


async def test_a_member_interrupts_only_their_own_running_prompt(team, http):
    stack, alice, bob, _admin = team
    stack.up_state["delay"] = 60  # it runs until interrupted
    a1 = await queue(http, stack.url(""), alice.bearer)

    async def running() -> None:
        while stack.up_state["running"] != a1:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(running(), 10)
    for body in ({}, {"prompt_id": a1}, {"prompt_id": "no-such-prompt"}):
        async with http.post(stack.url("/interrupt"), json=body, headers=bob.bearer) as r:
            assert r.status == 403, await r.text()
            assert "interrupt only their own" in (await r.json())["error"]
    assert stack.up_state["interrupt"] == set()
    async with http.post(stack.url("/api/interrupt"), headers=alice.bearer) as r:
        assert r.status == 200
    assert stack.up_state["interrupt"] == {a1}
    await finished(stack, a1)
    assert stack.up_state["history"][a1]["status"]["status_str"] == "error"


async def test_a_guessed_prompt_id_cannot_take_over_anothers(team, http):
    stack, alice, bob, _admin = team
    await held(stack)
    a1 = await queue(http, stack.url(""), alice.bearer, prompt_id="alice-run-1")
    async with http.post(
        stack.url("/prompt"), json={"prompt": PROMPT, "prompt_id": a1}, headers=bob.bearer
    ) as r:
        assert r.status == 409, await r.text()
    assert stack.up_state["queue"] == [a1] and stack.up_state["items"][a1][3][OWNER] == owner_of(
        stack.settings, "alice"
    )


async def test_a_member_cannot_jump_the_queue(team, http):
    stack, alice, _bob, admin = team
    await held(stack)
    await queue(http, stack.url(""), alice.bearer, front=True, number=-5)
    await queue(http, stack.url(""), admin, number=-5)
    alice_item, admin_item = (stack.up_state["items"][p] for p in stack.up_state["queue"])
    assert alice_item[0] > 0 and admin_item[0] == -5


async def test_a_socket_hears_only_its_accounts_prompts_whatever_clientid_it_picks(team, http):
    stack, alice, bob, admin = team
    async with aiohttp.ClientSession() as s:
        a_ws = await s.ws_connect(stack.url("/ws?clientId=tab"), headers=alice.bearer)
        b_ws = await s.ws_connect(stack.url("/ws?clientId=tab"), headers=bob.bearer)  # alice's clientId
        x_ws = await s.ws_connect(stack.url("/ws?clientId=tab"), headers=admin)
        a_heard, b_heard, x_heard = Heard(), Heard(), Heard()
        a1 = await queue(http, stack.url(""), alice.bearer, client_id="tab")
        # a prompt queued around the gate, with no client: ComfyUI broadcasts its messages
        async with http.post(f"http://127.0.0.1:{stack.upstream.port}/prompt", json={"prompt": PROMPT}) as r:
            around = (await r.json())["prompt_id"]
        b1 = await queue(http, stack.url(""), bob.bearer, client_id="tab")
        a2 = await queue(http, stack.url(""), alice.bearer, client_id="tab")
        # they run in turn, and a socket's messages arrive in order: by the end of the last
        # prompt each socket hears of, it has heard all it was going to of the earlier ones
        await listen_until(a_ws, a_heard, a2)
        await listen_until(b_ws, b_heard, b1)
        await listen_until(x_ws, x_heard, around)
        for ws in (a_ws, b_ws, x_ws):
            await ws.close()
    # each is told the clientId it asked for
    for heard in (a_heard, b_heard):
        assert heard.messages[0]["type"] == "status" and heard.messages[0]["data"]["sid"] == "tab"
    assert {"execution_start", "progress", "executed", "execution_success"} <= set(a_heard.types(a1))
    assert a_heard.prompt_ids() == {a1, a2} and b_heard.prompt_ids() == {b1}
    # previews too: one frame per node of each of their own prompts, none of the broadcast one
    assert a_heard.binary == 2 * len(PROMPT) and b_heard.binary == len(PROMPT)
    # the admin's socket hears what ComfyUI broadcast, and nothing sent to the members' sockets
    assert x_heard.prompt_ids() == {around} and x_heard.binary == len(PROMPT)


async def test_each_run_is_audited(team, http):
    stack, alice, _bob, _admin = team
    pid = await queue(http, stack.url(""), alice.bearer)
    entries = [json.loads(line) for line in (stack.settings.state_dir / "audit.log").read_text().splitlines()]
    [run] = [e for e in entries if e["event"] == "prompt"]
    assert run["user"] == "alice" and run["prompt_id"] == pid
    assert run["classes"] == {"EmptyImage": 1, "SaveImage": 1}


async def test_waiting_prompts_are_limited_per_member(make_stack, http):
    stack = await make_stack(max_waiting_per_user=2)
    alice, bob = add_account(stack.settings, "alice"), add_account(stack.settings, "bob")
    accounts = open_accounts(stack.settings)
    try:
        accounts.set_max_waiting("bob", 1)
    finally:
        accounts.close()
    admin = {"Authorization": f"Bearer {stack.token}"}
    await held(stack)
    for _ in range(2):
        await queue(http, stack.url(""), alice.bearer)
    async with http.post(stack.url("/prompt"), json={"prompt": PROMPT}, headers=alice.bearer) as r:
        assert r.status == 429 and int(r.headers["Retry-After"]) > 0
        assert "limit is 2" in (await r.json())["error"]

    async def submit() -> int:
        async with http.post(stack.url("/api/prompt"), json={"prompt": PROMPT}, headers=bob.bearer) as r:
            return r.status

    # two at the same moment against bob's last free place (his account's own limit, 1)
    assert sorted(await asyncio.gather(submit(), submit())) == [200, 429]
    for _ in range(3):  # the admin is not limited
        await queue(http, stack.url(""), admin)
    owners = [stack.up_state["items"][p][3][OWNER].rpartition(".")[0] for p in stack.up_state["queue"]]
    assert owners.count("alice") == 2 and owners.count("bob") == 1 and owners.count("admin") == 3
