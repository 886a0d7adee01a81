"""Driving ComfyUI's native API through the gate as several people: queue a prompt, read a
WebSocket until a prompt's end."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import aiohttp

from auth_proxy.accounts import open_accounts
from auth_proxy.ownership import owner_key

# EmptyImage -> SaveImage: what the stand-in and a real ComfyUI both run, with no weights
PROMPT = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "members"}},
}


async def queue(
    http: aiohttp.ClientSession, url: str, headers: dict, prompt: dict | None = None, **body
) -> str:
    """POST /prompt; its prompt_id (a refusal fails the test with ComfyUI's or the gate's answer)."""
    async with http.post(url + "/prompt", json={"prompt": prompt or PROMPT, **body}, headers=headers) as r:
        assert r.status == 200, await r.text()
        return (await r.json())["prompt_id"]


async def get_json(http: aiohttp.ClientSession, url: str, headers: dict):
    async with http.get(url, headers=headers) as r:
        assert r.status == 200, await r.text()
        return await r.json()


def owner_of(settings, account: str) -> str:
    """The account's owner key: what its prompts carry, and its ComfyUI user's name."""
    accounts = open_accounts(settings)
    try:
        return owner_key(accounts, account)
    finally:
        accounts.close()


@dataclass
class Heard:
    """What one socket received: its text messages and how many binary frames."""

    messages: list[dict] = field(default_factory=list)
    binary: int = 0

    def prompt_ids(self) -> set[str]:
        return {
            m["data"]["prompt_id"]
            for m in self.messages
            if isinstance(m.get("data"), dict) and "prompt_id" in m["data"]
        }

    def types(self, prompt_id: str) -> list[str]:
        return [
            m["type"]
            for m in self.messages
            if isinstance(m.get("data"), dict) and m["data"].get("prompt_id") == prompt_id
        ]


async def listen_until(
    ws: aiohttp.ClientWebSocketResponse, heard: Heard, prompt_id: str, timeout: float = 60
) -> Heard:
    """Read `ws` into `heard` until `prompt_id` has ended (success, error or interruption):
    messages on one socket arrive in the order sent, so whatever ComfyUI sent this socket
    before that end has been read."""

    async def read() -> None:
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.BINARY:
                heard.binary += 1
                continue
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            data = json.loads(msg.data)
            heard.messages.append(data)
            body = data.get("data") or {}
            if body.get("prompt_id") == prompt_id and data["type"] in (
                "execution_success",
                "execution_error",
                "execution_interrupted",
            ):
                return

    await asyncio.wait_for(read(), timeout)
    return heard
