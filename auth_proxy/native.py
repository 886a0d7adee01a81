"""ComfyUI's native API, each person's work their own: the one step the relay
(auth_proxy/relay.py) takes before relaying a request to ComfyUI.

- every request carries the account's ComfyUI user (`Comfy-User`, auth_proxy/comfy_users.py);
  `GET /users` and `POST /users` are answered here;
- every `POST /prompt` gets its owner and its bound client (auth_proxy/prompts.py);
- a member's `/queue`, `/history` and `/interrupt` are answered from their own entries
  (auth_proxy/queue_access.py); the admin's are relayed as they are;
- a WebSocket's clientId is bound to the account and what it receives is filtered
  (auth_proxy/ws_filter.py).

Decisions are made on the normalised path, so every spelling of a route (`/api/...`, an
encoded slash in a prompt id) comes here. On a cluster's gateway none of this runs: the
UI is relayed to a worker's own gate, which does it in front of its ComfyUI.
"""

from __future__ import annotations

import re

from aiohttp import web
from yarl import URL

from auth_proxy import ws_filter
from auth_proxy.comfy_users import COMFY_USER, ComfyUsers, users_route
from auth_proxy.ownership import Owners, owner_key
from auth_proxy.prompts import Prompts
from auth_proxy.queue_access import QueueAccess
from auth_proxy.services import NORM_PATH, WHO, Gate
from comfy_jobs.comfy import ComfyUI

ROUTE = re.compile(r"^(?:/api)?/(prompt|queue|history|interrupt|users)(?:/(.+))?$")
READ = ("GET", "HEAD")


class Native:
    """The parts, made at the first request (the upstream client is made at the gate's start)."""

    def __init__(self, gate: Gate):
        self.gate = gate
        self._parts: tuple[Owners, ComfyUsers, Prompts, QueueAccess] | None = None

    @property
    def parts(self) -> tuple[Owners, ComfyUsers, Prompts, QueueAccess]:
        if self._parts is None:
            assert self.gate.client is not None
            comfy = ComfyUI(self.gate.s.upstream, self.gate.client)
            owners = Owners(comfy)
            self._parts = (
                owners,
                ComfyUsers(comfy, self.gate.accounts, self.gate.s.admin_user),
                Prompts(self.gate, comfy, owners),
                QueueAccess(comfy, owners),
            )
        return self._parts


NATIVE = web.AppKey("native", Native)


def install(app: web.Application, gate: Gate) -> None:
    app[NATIVE] = Native(gate)


async def handle(request: web.Request) -> web.StreamResponse | None:
    """The answer for a request the gate answers itself, or None to relay it (with the
    account's ComfyUI user set)."""
    owners, users, prompts, queue = request.config_dict[NATIVE].parts
    who = request[WHO]
    match = ROUTE.match(request[NORM_PATH])
    route, rest = match.groups() if match else (None, None)
    if route == "users" and rest is None:
        return await users_route(request)
    user_id = await users.user_id(who)
    if user_id is not None:
        request[COMFY_USER] = user_id
    me = owner_key(request.config_dict[NATIVE].gate.accounts, who.user)
    if route == "prompt" and rest is None and request.method == "POST":
        return await prompts.submit(request, who, me)
    if who.is_admin or route is None:
        return None
    if route == "history" and rest is not None:
        return await queue.history(request, me, rest) if request.method in READ else None
    if rest is not None:
        return None
    if route in ("queue", "history") and request.method in READ:
        return await (queue.queue(me) if route == "queue" else queue.history(request, me, None))
    if route in ("queue", "history") and request.method == "POST":
        return await queue.delete(request, me, route)
    if route == "interrupt" and request.method == "POST":
        return await queue.interrupt(request, me)
    return None


def websocket(request: web.Request, url: URL) -> tuple[URL, ws_filter.ClientView]:
    """ComfyUI's URL for this socket (its clientId bound to the account), and its filter."""
    native = request.config_dict[NATIVE]
    who = request[WHO]
    return ws_filter.bind(request, url, who, owner_key(native.gate.accounts, who.user), native.parts[0])
