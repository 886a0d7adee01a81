"""`POST /prompt` through the gate: every prompt gets its owner and its client bound to the
account.

What the gate writes into the body before ComfyUI sees it:
- `extra_data[OWNER]`: the account (auth_proxy/ownership.py), whatever the client sent;
- `client_id` (and `extra_data.client_id`, which ComfyUI would otherwise take): the client's
  clientId bound to the account (auth_proxy/ws_filter.py), so the prompt's messages go to
  that account's socket only. A prompt sent without one gets a bound id no socket holds:
  ComfyUI would broadcast its progress and previews to everyone;
- `prompt_id`: the client's, unless ComfyUI already holds a prompt of someone else under it
  (`409`: a run under that id would overwrite their history entry), else a new one, so
  that the gate knows whose prompt it is before ComfyUI starts sending its messages;
- for a member, `front` and `number` are dropped: ComfyUI orders its queue by that number,
  and a member may not put their prompt ahead of others' (the admin may).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter

from aiohttp import web

from auth_proxy import audit
from auth_proxy.ownership import OWNER, Owners
from auth_proxy.replies import error
from auth_proxy.services import Gate, Who
from auth_proxy.ws_filter import bound_client_id
from comfy_jobs.comfy import ComfyUI

MAX_BODY = 64 << 20  # a workflow with its UI form in extra_pnginfo, with room to spare


class Prompts:
    def __init__(self, gate: Gate, comfy: ComfyUI, owners: Owners):
        self.gate = gate
        self.comfy = comfy
        self.owners = owners

    async def submit(self, request: web.Request, who: Who, me: str) -> web.Response:
        """`me`: the account's owner key (auth_proxy/ownership.py)."""
        body = await read_json(request)
        if isinstance(body, web.Response):
            return body
        extra = dict(body["extra_data"]) if isinstance(body.get("extra_data"), dict) else {}
        client = body.get("client_id")
        bound = bound_client_id(me, client if isinstance(client, str) else "")
        extra.update({OWNER: me, "client_id": bound})
        body.update(extra_data=extra, client_id=bound)
        if not who.is_admin:
            body.pop("front", None)
            body.pop("number", None)
        if body.get("prompt_id") is not None:
            prompt_id = str(body["prompt_id"])
            held = await self.owners.holder(prompt_id)
            if held is not None and held != me:
                return error(
                    409, "a prompt with this prompt_id exists: leave prompt_id out or choose another"
                )
        else:
            prompt_id = str(uuid.uuid4())
        body["prompt_id"] = prompt_id
        # before ComfyUI has it: its first messages may come before its answer
        self.owners.remember(prompt_id, me)
        status, answer = await self.comfy.call("POST", "/prompt", json=body)
        if status != 200:
            self.owners.forget(prompt_id)
        else:
            prompt = body.get("prompt")
            classes = Counter(
                str(n.get("class_type"))
                for n in (prompt.values() if isinstance(prompt, dict) else ())
                if isinstance(n, dict)
            )
            audit.record(self.gate, "prompt", user=who.user, prompt_id=prompt_id, classes=dict(classes))
        return web.json_response(answer, status=status)


async def read_json(request: web.Request) -> dict | web.Response:
    data = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        data += chunk
        if len(data) > MAX_BODY:
            return error(413, f"a prompt is at most {MAX_BODY >> 20} MiB")
    try:
        body = json.loads(data)
    except ValueError:
        return error(400, "the body is not JSON")
    return body if isinstance(body, dict) else error(400, "the body must be a JSON object")
