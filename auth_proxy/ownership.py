"""Who owns a prompt in ComfyUI's native queue and history.

The gate writes the account into every prompt it relays (`extra_data[OWNER]`, whatever a
client sent there), as its name and creation time (`owner_key`): an account deleted and
made again under the same name is another person, who must not see the first one's
prompts that ComfyUI still holds. ComfyUI keeps `extra_data` in the queue item and, once the
prompt ran, in its history entry (execution.PromptQueue: an item is `[number, prompt_id,
prompt, extra_data, outputs_to_execute]`, and task_done stores that item as the entry's
`prompt`; it drops only the comfy.org credentials from extra_data), so the owner is read
back from ComfyUI itself: it outlives a restart of the gate for as long as ComfyUI runs,
and every gate replica in front of one ComfyUI reads the same.

`Owners` remembers the owner of the prompts this gate has seen, and asks ComfyUI for the
others (a WebSocket message naming a prompt queued before the gate restarted).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from urllib.parse import quote

from auth_proxy.accounts import Accounts
from comfy_jobs.comfy import ComfyUI

log = logging.getLogger(__name__)
OWNER = "comfy_stack_owner"
REMEMBERED = 10_000  # prompt ids whose owner is kept in memory (ComfyUI keeps 10 000 in its history)
NOBODY = ""  # a prompt with no owner tag: queued around the gate (the v2 worker), or unknown


def owner_key(accounts: Accounts, user: str) -> str:
    """The owner written into an account's prompts: its name and when it was made, in ms."""
    account = accounts.account(user)
    return f"{user}.{int((account.created if account else 0.0) * 1000)}"


def owner_of_item(item: object) -> str:
    """The owner written in a queue item or in a history entry's `prompt`; NOBODY if none."""
    if isinstance(item, (list, tuple)) and len(item) > 3 and isinstance(item[3], dict):
        owner = item[3].get(OWNER)
        if isinstance(owner, str):
            return owner
    return NOBODY


def owner_of_entry(entry: object) -> str:
    """The owner of a history entry (`{"prompt": item, "outputs": ..., "status": ...}`)."""
    return owner_of_item(entry.get("prompt")) if isinstance(entry, dict) else NOBODY


def prompt_id_of(item: object) -> str | None:
    if isinstance(item, (list, tuple)) and len(item) > 1 and isinstance(item[1], str):
        return item[1]
    return None


class Owners:
    """prompt id -> owner, for the prompts this gate queued or looked up."""

    def __init__(self, comfy: ComfyUI):
        self.comfy = comfy
        self._known: OrderedDict[str, str] = OrderedDict()

    def remember(self, prompt_id: str, owner: str) -> None:
        self._known[prompt_id] = owner
        self._known.move_to_end(prompt_id)
        while len(self._known) > REMEMBERED:
            self._known.popitem(last=False)

    def forget(self, prompt_id: str) -> None:
        self._known.pop(prompt_id, None)

    def known(self, prompt_id: str) -> str | None:
        return self._known.get(prompt_id)

    async def owner(self, prompt_id: str) -> str:
        """The prompt's owner, from memory or else from ComfyUI's queue and history;
        NOBODY for a prompt without a tag or one ComfyUI does not have."""
        found = self._known.get(prompt_id)
        if found is not None:
            return found
        held = await self.holder(prompt_id)
        # one ComfyUI does not have is not remembered: it may be a prompt on its way in
        return NOBODY if held is None else held

    async def holder(self, prompt_id: str) -> str | None:
        """The owner of the prompt ComfyUI has in its queue or history under this id (NOBODY
        when untagged), or None when it has none: asked of ComfyUI, not of memory."""
        _, queue = await self.comfy.call("GET", "/queue")
        items = queue if isinstance(queue, dict) else {}
        for item in [*items.get("queue_running", []), *items.get("queue_pending", [])]:
            if prompt_id_of(item) == prompt_id:
                return self._learnt(prompt_id, owner_of_item(item))
        _, history = await self.comfy.call("GET", "/history/" + quote(prompt_id, safe=""))
        if isinstance(history, dict) and prompt_id in history:
            return self._learnt(prompt_id, owner_of_entry(history[prompt_id]))
        return None

    def _learnt(self, prompt_id: str, owner: str) -> str:
        self.remember(prompt_id, owner)
        return owner
