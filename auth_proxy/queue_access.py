"""A member's share of ComfyUI's native queue and history: what they see, and what they may
delete or interrupt. The admin's requests are relayed as they are (auth_proxy/native.py).
`user` below is the member's owner key (auth_proxy/ownership.py).

- `GET /queue`: only their own running and waiting prompts.
- `GET /history` (`max_items`, `offset` as ComfyUI takes them, counted over their own
  entries) and `GET /history/{id}`: only their own; another's id is `{}`, as a missing one.
- `POST /queue` and `POST /history`: `delete` keeps only their own ids; `clear` deletes
  their own entries, not everyone's.
- `POST /interrupt`: only their own running prompt. A global interrupt (no `prompt_id`) is
  sent as a targeted one naming their running prompt, so that it cannot hit another's
  prompt that started meanwhile; when none of theirs runs, or the id named is not theirs,
  the answer is `403` and nothing is interrupted.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from aiohttp import web

from auth_proxy.ownership import Owners, owner_of_entry, owner_of_item, prompt_id_of
from auth_proxy.replies import error
from comfy_jobs.comfy import ComfyUI

QUEUE_KEYS = ("queue_running", "queue_pending")
NOT_YOURS = "no prompt of yours with that id is running: a member can interrupt only their own"
NONE_RUNNING = "none of your prompts is running: a member can interrupt only their own"


async def own_queue(comfy: ComfyUI, user: str) -> dict:
    status, body = await comfy.call("GET", "/queue")
    body = body if status == 200 and isinstance(body, dict) else {}
    return {k: [i for i in body.get(k, []) if owner_of_item(i) == user] for k in QUEUE_KEYS}


def window(entries: dict, max_items: int | None, offset: int) -> dict:
    """ComfyUI's PromptQueue.get_history paging (oldest first; without an offset, the last
    `max_items`), applied to the member's own entries."""
    if offset < 0 and max_items is not None:
        offset = len(entries) - max_items
    out = {}
    for i, (k, v) in enumerate(entries.items()):
        if i >= offset:
            out[k] = v
            if max_items is not None and len(out) >= max_items:
                break
    return out


async def read_body(request: web.Request) -> dict | web.Response:
    if not request.body_exists:
        return {}
    try:
        body = json.loads(await request.read() or b"{}")
    except ValueError:
        return error(400, "the body is not JSON")
    return body if isinstance(body, dict) else error(400, "the body must be a JSON object")


class QueueAccess:
    def __init__(self, comfy: ComfyUI, owners: Owners):
        self.comfy = comfy
        self.owners = owners

    async def queue(self, user: str) -> web.Response:
        return web.json_response(await own_queue(self.comfy, user))

    async def history(self, request: web.Request, user: str, prompt_id: str | None) -> web.Response:
        if prompt_id is not None:
            status, body = await self.comfy.call("GET", "/history/" + quote(prompt_id, safe=""))
            if status != 200 or not isinstance(body, dict):
                return web.json_response(body, status=status)
            return web.json_response({k: v for k, v in body.items() if owner_of_entry(v) == user})
        try:
            max_items = int(request.query["max_items"]) if "max_items" in request.query else None
            offset = int(request.query.get("offset", -1))
        except ValueError:
            return error(400, "max_items and offset are whole numbers")
        status, body = await self.comfy.call("GET", "/history")
        if status != 200 or not isinstance(body, dict):
            return web.json_response(body, status=status)
        own = {k: v for k, v in body.items() if owner_of_entry(v) == user}
        for k in own:
            self.owners.remember(k, user)
        return web.json_response(window(own, max_items, offset))

    async def delete(self, request: web.Request, user: str, what: str) -> web.Response:
        """POST /queue or /history (`what`), reduced to the member's own entries."""
        body = await read_body(request)
        if isinstance(body, web.Response):
            return body
        doomed: list[str] = []
        if body.get("clear"):
            if what == "queue":
                doomed += [
                    pid
                    for i in (await own_queue(self.comfy, user))["queue_pending"]
                    if (pid := prompt_id_of(i))
                ]
            else:
                _, history = await self.comfy.call("GET", "/history")
                if isinstance(history, dict):
                    doomed += [k for k, v in history.items() if owner_of_entry(v) == user]
        asked = body.get("delete")
        for pid in asked if isinstance(asked, list) else []:
            if isinstance(pid, str) and pid not in doomed and await self.owners.owner(pid) == user:
                doomed.append(pid)
        if doomed:
            status, answer = await self.comfy.call("POST", f"/{what}", json={"delete": doomed})
            if status != 200:
                return web.json_response(answer, status=status)
        return web.Response(status=200)

    async def interrupt(self, request: web.Request, user: str) -> web.Response:
        body = await read_body(request)
        if isinstance(body, web.Response):
            return body
        target = body.get("prompt_id")
        if target:
            if not isinstance(target, str) or await self.owners.owner(target) != user:
                return error(403, NOT_YOURS)
        else:
            running = (await own_queue(self.comfy, user))["queue_running"]
            target = next((pid for i in running if (pid := prompt_id_of(i))), None)
            if target is None:
                return error(403, NONE_RUNNING)
        # ComfyUI interrupts only if this prompt is the one running (server.py post_interrupt)
        status, answer = await self.comfy.call("POST", "/interrupt", json={"prompt_id": target})
        return web.Response(status=200) if status == 200 else web.json_response(answer, status=status)
