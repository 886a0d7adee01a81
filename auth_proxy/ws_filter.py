"""Which WebSocket messages of ComfyUI reach whom.

ComfyUI sends a prompt's messages (executing, progress, executed, the binary preview
frames) to the socket whose clientId equals the prompt's `client_id`, and broadcasts
those of a prompt queued without one (server.py send_json/send_bytes with sid None).
ClientIds are chosen by the client, so on their own they would let anyone attach to
another's: the gate binds them to the account. It opens ComfyUI's socket with
`bound_client_id(user, clientId)` and writes the same into every `client_id` of a prompt
it relays (auth_proxy/prompts.py), so a prompt's messages reach only sockets of the
account that queued it, whatever clientId another account picks.

The app keeps the clientId it chose: it adopts the `sid` of the first `status` message as
its clientId (and sends it back with each prompt), so that `sid` is given back as the
client sent it. A member's socket also drops any message naming another's prompt (a
prompt queued around the gate is broadcast) and the binary frames that follow one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
import uuid

from aiohttp import web
from yarl import URL

from auth_proxy.ownership import Owners
from auth_proxy.services import Who
from comfy_jobs.comfy import Unreachable

log = logging.getLogger(__name__)
# server.py BinaryEventTypes: a preview whose header names its prompt (metadata JSON)
PREVIEW_IMAGE_WITH_METADATA = 4


def bound_client_id(owner: str, client_id: str) -> str:
    """ComfyUI's clientId for `client_id` of an account (its owner key): the same for the same pair (a reconnect
    after a restart of the gate finds its prompts' messages), never the same for two
    accounts. As long as a uuid's hex, which is what ComfyUI makes itself."""
    return hashlib.sha256(f"comfy-stack client\0{owner}\0{client_id}".encode()).hexdigest()[:32]


class ClientView:
    """What one relayed socket may receive."""

    def __init__(self, who: Who, me: str, client_id: str, owners: Owners):
        """`me`: the account's owner key (auth_proxy/ownership.py)."""
        self.who = who
        self.me = me
        self.client_id = client_id
        self.bound = bound_client_id(me, client_id)
        self.owners = owners
        self.member = not who.is_admin
        # whether the last prompt this socket heard of is the member's own: ComfyUI runs one
        # prompt at a time and sends a prompt's progress before its preview frames
        self.own_prompt = False

    async def _own(self, prompt_id: str) -> bool:
        try:
            return await self.owners.owner(prompt_id) == self.me
        except Unreachable:
            return False

    async def text(self, data: str) -> str | None:
        """The message as this client gets it, or None to drop it."""
        if not self.member and '"sid"' not in data:
            return data
        try:
            msg = json.loads(data)
        except ValueError:
            return data
        body = msg.get("data") if isinstance(msg, dict) else None
        if not isinstance(body, dict):
            return data
        if self.member and isinstance(body.get("prompt_id"), str):
            self.own_prompt = await self._own(body["prompt_id"])
            if not self.own_prompt:
                return None
        if msg.get("type") == "status" and body.get("sid") == self.bound:
            body["sid"] = self.client_id
            return json.dumps(msg)
        return data

    async def binary(self, data: bytes) -> bool:
        """Whether this client gets the binary frame."""
        if not self.member:
            return True
        if len(data) >= 8 and struct.unpack(">I", data[:4])[0] == PREVIEW_IMAGE_WITH_METADATA:
            size = struct.unpack(">I", data[4:8])[0]
            try:
                meta = json.loads(data[8 : 8 + size])
            except ValueError:
                return False
            if isinstance(meta, dict) and isinstance(meta.get("prompt_id"), str):
                return await self._own(meta["prompt_id"])
        return self.own_prompt


def bind(request: web.Request, url: URL, who: Who, me: str, owners: Owners) -> tuple[URL, ClientView]:
    """ComfyUI's URL for this client's socket, and what the client may receive on it."""
    # Without a clientId ComfyUI would make one up and tell the client in `sid`; the gate
    # makes it up instead, so that it is the one the client is told.
    client_id = request.query.get("clientId") or uuid.uuid4().hex
    view = ClientView(who, me, client_id, owners)
    return url.update_query(clientId=view.bound), view
