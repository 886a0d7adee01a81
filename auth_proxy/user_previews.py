"""Whose prompt produced a temporary file (PreviewImage's and other previews in temp/).

ComfyUI names previews with a random prefix of its own (`ComfyUI_temp_abcde_00001_.png`),
which no input of the prompt sets, so the folder cannot tell whose they are. ComfyUI's
history can: each entry lists the files its run produced, and its `prompt` item carries the
`extra_data` the gate wrote into the prompt, with the owner under `OWNER`
(auth_proxy/ownership.py; execution.PromptQueue keeps `[number, prompt_id, prompt, extra_data, outputs]`). The
gate asks ComfyUI for its most recent history entries when a member asks for a temporary
file it does not know yet, and remembers the temporary files of every entry it has read.

What this reads is ComfyUI's own record, so it holds across restarts of the gate for as
long as ComfyUI keeps the files (it empties temp/ when it starts). A preview is known once
ComfyUI records its run in the history, at the run's end.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

import aiohttp

from auth_proxy.ownership import owner_of_entry

log = logging.getLogger(__name__)
REMEMBERED = 50_000  # temporary files whose owner is kept (the oldest are forgotten first)
FIRST_ASK = 64  # history entries asked for at first; doubled while all of them are new
MOST_ASKED = 4096
MIN_INTERVAL_S = 1.0  # ComfyUI's history is asked at most this often, whoever misses


def temp_files(entry: object) -> list[tuple[str, str]]:
    """(subfolder, filename) of every temporary file a history entry lists, in any output
    kind (images, gifs, audio, 3d, ...)."""
    found = []
    outputs = entry.get("outputs") if isinstance(entry, dict) else None
    for node in (outputs or {}).values() if isinstance(outputs, dict) else ():
        for files in node.values() if isinstance(node, dict) else ():
            for f in files if isinstance(files, list) else ():
                if isinstance(f, dict) and f.get("type") == "temp" and isinstance(f.get("filename"), str):
                    found.append((str(f.get("subfolder") or ""), f["filename"]))
    return found


class TempOwners:
    def __init__(self, upstream: str, client: aiohttp.ClientSession):
        self.upstream = upstream
        self.client = client
        self._owners: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._seen: OrderedDict[str, None] = OrderedDict()  # history entries already read
        self._asked_at = -MIN_INTERVAL_S
        self._asking: asyncio.Future | None = None

    def learn(self, owner: str, subfolder: str, filename: str) -> None:
        key = (subfolder, filename)
        self._owners[key] = owner
        self._owners.move_to_end(key)
        while len(self._owners) > REMEMBERED:
            self._owners.popitem(last=False)

    async def owner(self, subfolder: str, filename: str) -> str:
        """The account whose prompt produced this temporary file; "" if none is known."""
        key = (subfolder, filename)
        if key not in self._owners:
            await self.refresh()
        return self._owners.get(key, "")

    async def refresh(self) -> None:
        """Read ComfyUI's newest history entries, once at a time and at most once a
        second, so that guessed names cost ComfyUI nothing more."""
        if self._asking is not None:
            await asyncio.shield(self._asking)
            return
        if time.monotonic() - self._asked_at < MIN_INTERVAL_S:
            return
        self._asking = asyncio.ensure_future(self._read_new())
        try:
            await asyncio.shield(self._asking)
        finally:
            self._asking = None
            self._asked_at = time.monotonic()

    async def _read_new(self) -> None:
        count = FIRST_ASK
        while True:
            try:
                async with self.client.get(f"{self.upstream}/history", params={"max_items": count}) as r:
                    history = await r.json() if r.status == 200 else {}
            except (aiohttp.ClientError, ValueError) as exc:
                log.info("ComfyUI's history could not be read for a preview's owner: %s", exc)
                return
            if not isinstance(history, dict):
                return
            new = [pid for pid in history if pid not in self._seen]
            for pid in new:
                entry = history[pid]
                for subfolder, filename in temp_files(entry):
                    self.learn(owner_of_entry(entry), subfolder, filename)
                self._seen[pid] = None
            while len(self._seen) > REMEMBERED:
                self._seen.popitem(last=False)
            # all of them new: older entries may be new too
            if len(new) < count or len(history) < count or count >= MOST_ASKED:
                return
            count *= 2
