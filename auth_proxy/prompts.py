"""`POST /prompt` through the gate: every prompt gets its owner, its client bound to the
account, and a member's waiting prompts are limited.

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
  and a member may not put their prompt ahead of others' (the admin may);
- for a member, every `filename_prefix` is moved into their own output folder
  (auth_proxy/user_files.py), after the graph passed the member policy
  (comfy_jobs/member_policy.py: no other person's files, no node that reaches any path);
  a refusal names the node, in ComfyUI's error shape.

The limit: a member with `max_waiting` prompts (their account's, else
COMFY_JOBS_MAX_WAITING_PER_USER; 0 there means none) already waiting in ComfyUI's queue is
answered `429` with `Retry-After`. The count is read from ComfyUI's queue by owner, and the
check and the submission are one step per account, so two submissions at the same moment
cannot both pass the last free place. ComfyUI's queue stays first in, first out: the gate
limits, it does not reorder.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter, defaultdict

from aiohttp import web

from auth_proxy import audit
from auth_proxy.forms import bounded_body
from auth_proxy.ownership import OWNER, Owners
from auth_proxy.queue_access import own_queue
from auth_proxy.replies import error
from auth_proxy.services import Gate, Who
from auth_proxy.ws_filter import bound_client_id
from comfy_jobs import member_policy
from comfy_jobs.comfy import ComfyUI

MAX_BODY = 64 << 20  # a workflow with its UI form in extra_pnginfo, with room to spare
# ComfyUI gives no estimate of when a waiting prompt starts; a client asks again after this.
RETRY_AFTER_S = 10


class Prompts:
    def __init__(self, gate: Gate, comfy: ComfyUI, owners: Owners):
        self.gate = gate
        self.comfy = comfy
        self.owners = owners
        self._turns: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def limit(self, user: str) -> int | None:
        """How many prompts the member may have waiting; None: no limit."""
        account = self.gate.accounts.account(user)
        if account is not None and account.max_waiting is not None:
            return account.max_waiting
        return self.gate.s.max_waiting_per_user or None

    def member_refusal(self, prompt: dict, user: str) -> web.Response | None:
        """None when the member's graph may run (its outputs then moved into their folder),
        else ComfyUI's error answer naming the node: 403 for what members may not do, 400 for
        an output name that would leave their folder."""
        jobs = self.gate.s.jobs
        try:
            member_policy.check(prompt, user, jobs.member_denied_nodes if jobs else ())
            member_policy.own_outputs(prompt, user)
        except (member_policy.Refused, member_policy.BadName) as exc:
            return web.json_response(
                {
                    "error": {"type": "invalid_prompt", "message": str(exc), "details": "", "extra_info": {}},
                    "node_errors": {},
                },
                status=403 if isinstance(exc, member_policy.Refused) else 400,
            )
        return None

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
            if isinstance(body.get("prompt"), dict):
                refused = self.member_refusal(body["prompt"], who.user)
                if refused is not None:
                    return refused
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
        async with self._turns[me]:  # one account's check and submission at a time
            limit = None if who.is_admin else self.limit(who.user)
            if limit is not None:
                waiting = len((await own_queue(self.comfy, me))["queue_pending"])
                if waiting >= limit:
                    return error(
                        429,
                        f"you have {waiting} prompts waiting, your limit is {limit}: "
                        "queue more when one of them has started",
                        **{"Retry-After": str(RETRY_AFTER_S)},
                    )
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
    data = await bounded_body(request, MAX_BODY)
    if data is None:
        return error(413, f"a prompt is at most {MAX_BODY >> 20} MiB")
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
        return error(400, "the body is not JSON")
    return body if isinstance(body, dict) else error(400, "the body must be a JSON object")
