"""Two members and the admin, each in their own Chromium, through the gate: each queues a
prompt and saves a workflow from their page (the session cookie, as the app does); each
sees only their own queue, history and workflows, hears only their own prompt on a
WebSocket opened with the very same clientId, and gets 404 for the other's output; the
admin sees everything. (The same with ComfyUI's own front end and a real ComfyUI:
test_real_members.py.)"""

from __future__ import annotations

import json

from tests.support.browser import in_chromium
from tests.support.native import PROMPT
from tests.support.proxy import PASSWORD, add_account

# Runs in the page: a WebSocket on the shared clientId, a prompt, then what the page can see.
IN_PAGE = """async ([prompt, workflowName]) => {
  const heard = [];
  const ws = new WebSocket(`ws://${location.host}/ws?clientId=shared-tab`);
  ws.onmessage = (e) => { if (typeof e.data === 'string') heard.push(JSON.parse(e.data)); };
  await new Promise((ok) => { ws.onopen = ok; });
  const headers = {'Content-Type': 'application/json'};
  const queued = await (await fetch('/prompt', {method: 'POST', headers,
      body: JSON.stringify({prompt, client_id: 'shared-tab'})})).json();
  await fetch('/userdata/' + encodeURIComponent('workflows/' + workflowName), {method: 'POST', headers,
      body: JSON.stringify({nodes: [], mine: workflowName})});
  for (let i = 0; i < 100; i++) {
    const h = await (await fetch('/history/' + queued.prompt_id)).json();
    if (h[queued.prompt_id]) break;
    await new Promise((ok) => setTimeout(ok, 100));
  }
  await new Promise((ok) => setTimeout(ok, 500));  // the run's last messages
  ws.close();
  const history = await (await fetch('/history')).json();
  const queue = await (await fetch('/queue')).json();
  const workflows = await (await fetch('/userdata?dir=workflows')).json();
  return {prompt_id: queued.prompt_id, heard, history: Object.keys(history),
          queue: queue.queue_pending.length + queue.queue_running.length, workflows,
          outputs: history[queued.prompt_id] ? history[queued.prompt_id].outputs : {}};
}"""


async def test_two_members_and_the_admin_in_chromium(make_stack):
    stack = await make_stack()
    alice, bob = add_account(stack.settings, "alice"), add_account(stack.settings, "bob")
    base = stack.origin

    def drive(browser):
        seen = {}
        pages = {}
        for name, password in (("alice", alice.password), ("bob", bob.password), ("admin", PASSWORD)):
            page = browser.new_context().new_page()
            page.goto(base + "/login")
            page.fill("#username", name)
            page.fill("#password", password)
            page.click("button[type=submit]")
            page.wait_for_url(base + "/")
            pages[name] = page
        for name in ("alice", "bob"):
            seen[name] = pages[name].evaluate(IN_PAGE, [PROMPT, f"{name}.json"])
        # bob asks for alice's output file and her history entry by their names
        image = next(iter(seen["alice"]["outputs"].values()))["images"][0]
        query = f"filename={image['filename']}&subfolder={image['subfolder']}&type={image['type']}"
        seen["bob_view"] = pages["bob"].evaluate(f"async () => (await fetch('/view?{query}')).status")
        seen["alice_view"] = pages["alice"].evaluate(f"async () => (await fetch('/view?{query}')).status")
        seen["bob_entry"] = pages["bob"].evaluate(
            f"async () => await (await fetch('/history/{seen['alice']['prompt_id']}')).json()"
        )
        seen["admin_history"] = pages["admin"].evaluate(
            "async () => Object.keys(await (await fetch('/history')).json())"
        )
        return seen

    seen = await in_chromium(drive)
    a, b = seen["alice"], seen["bob"]
    assert a["history"] == [a["prompt_id"]] and b["history"] == [b["prompt_id"]]
    assert a["workflows"] == ["alice.json"] and b["workflows"] == ["bob.json"]
    for mine, other in ((a, b), (b, a)):
        named = {json.dumps(m.get("data", {}).get("prompt_id")) for m in mine["heard"]}
        assert json.dumps(mine["prompt_id"]) in named, "each hears their own run"
        assert json.dumps(other["prompt_id"]) not in named, "and never the other's, on the same clientId"
    assert seen["bob_view"] == 404 and seen["alice_view"] == 200
    assert seen["bob_entry"] == {}
    assert set(seen["admin_history"]) >= {a["prompt_id"], b["prompt_id"]}
