"""The ComfyUI client: the routes the v2 worker and `comfyctl run` use, with ComfyUI's own
semantics. The worker talks to its own ComfyUI on loopback; `comfyctl run` to any server
(through the gate, with credentials), so it also bounds what it reads (`max_json`,
`max_msg_size`) and tells a malformed answer (`Malformed`) from a missing server.

ComfyUI keeps its queue and history in memory, and `/history/{id}` is `{}` both for a run
not yet finished and for one lost in a crash; only asking `/queue` first, then
`/history`, tells them apart: a prompt moves from the running list to the history under
one lock (execution.PromptQueue.task_done), so a prompt in neither was lost.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=5)


class Unreachable(Exception):
    """ComfyUI did not answer. `sent` is False when the request certainly never reached it
    (the connection was refused), so a submission did not happen. `status` is the HTTP
    status when it answered one it should not have (401 from a gate, 500, ...)."""

    def __init__(self, what: str, sent: bool = True, status: int | None = None):
        super().__init__(what)
        self.sent = sent
        self.status = status


class Malformed(Unreachable):
    """It answered, but not as ComfyUI does: not JSON, over `max_json` bytes, or the wrong
    shape. An Unreachable to the worker (its ComfyUI is broken: wait for it), a refused
    answer to `comfyctl run`."""


class FileGone(Exception):
    """ComfyUI no longer has a file a run reported (a temp preview after a restart, say)."""


class Rejected(Exception):
    """ComfyUI answered POST /prompt with 400: its `error` and `node_errors`."""

    def __init__(self, body: dict):
        super().__init__(str(body.get("error")))
        self.body = body


@dataclass
class Located:
    state: str  # "pending", "running", "done", "unknown"
    entry: dict | None = None  # the history entry when done


class ComfyUI:
    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession,
        headers: dict[str, str] | None = None,
        max_json: int | None = None,
        max_msg_size: int = 0,
    ):
        """`headers` go with every request (the gate's credentials); `max_json` bounds a
        JSON answer and `max_msg_size` a WebSocket message (0: no bound, for the worker's
        own ComfyUI)."""
        self.base = base_url.rstrip("/")
        self.s = session
        self.headers = dict(headers or {})
        self.max_json = max_json
        self.max_msg_size = max_msg_size

    async def _json(self, method: str, path: str, **kw):
        try:
            async with self.s.request(
                method, self.base + path, timeout=TIMEOUT, headers=self.headers, **kw
            ) as r:
                if self.max_json is None:
                    body = await r.read()
                else:
                    body = await self._bounded(r, path)
                try:
                    return r.status, (json.loads(body) if body else None)
                except ValueError:
                    raise Malformed(
                        f"ComfyUI at {self.base}: {path} answered HTTP {r.status} that is not JSON",
                        status=r.status,
                    ) from None
        except aiohttp.ClientConnectorError as exc:
            raise Unreachable(f"ComfyUI at {self.base}: {exc}", sent=False) from None
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise Unreachable(f"ComfyUI at {self.base}: {type(exc).__name__} {exc}") from None

    async def call(self, method: str, path: str, **kw) -> tuple[int, object]:
        """Any route: its status and its JSON (None for an empty body), for callers that
        speak ComfyUI's native API themselves (the gate's view of the queue)."""
        return await self._json(method, path, **kw)

    async def _bounded(self, r: aiohttp.ClientResponse, path: str) -> bytes:
        assert self.max_json is not None
        body = bytearray()
        async for chunk in r.content.iter_chunked(1 << 16):
            body += chunk
            if len(body) > self.max_json:
                raise Malformed(f"ComfyUI at {self.base}: {path} answered over {self.max_json} bytes")
        return bytes(body)

    async def ready(self) -> bool:
        try:
            status, _ = await self._json("GET", "/queue")
            return status == 200
        except Unreachable:
            return False

    async def object_info(self) -> dict:
        status, body = await self._json("GET", "/object_info")
        if status != 200 or not isinstance(body, dict):
            raise Unreachable(f"ComfyUI /object_info answered {status}")
        return body

    async def submit(self, prompt_id: str, prompt: dict, client_id: str, extra_data: dict | None):
        """Queue the prompt under our own id; ComfyUI's answer (its node_errors may list
        outputs it dropped)."""
        body = {"prompt": prompt, "prompt_id": prompt_id, "client_id": client_id}
        if extra_data:
            body["extra_data"] = extra_data
        status, answer = await self._json("POST", "/prompt", json=body)
        if status == 400:
            raise Rejected(answer if isinstance(answer, dict) else {"error": answer})
        if status != 200:
            raise Unreachable(f"ComfyUI POST /prompt answered {status}", status=status)
        return answer

    async def history(self, prompt_id: str):
        """/history/{id} as ComfyUI answers it: {id: entry} once the run is done, else {}."""
        status, h = await self._json("GET", f"/history/{prompt_id}")
        if status != 200:
            raise Unreachable(f"ComfyUI /history answered {status}", status=status)
        return h

    async def locate(self, prompt_id: str, history_first: bool = False) -> Located:
        """`history_first`: the WebSocket said the run ended, so its entry is most likely
        there; one request instead of two (a history entry is final whatever /queue says)."""
        if history_first:
            h = await self.history(prompt_id)
            if isinstance(h, dict) and prompt_id in h:
                return Located("done", h[prompt_id])
        status, q = await self._json("GET", "/queue")
        if status != 200 or not isinstance(q, dict):
            raise Unreachable(f"ComfyUI /queue answered {status}")
        if any(item[1] == prompt_id for item in q.get("queue_running", [])):
            return Located("running")
        if any(item[1] == prompt_id for item in q.get("queue_pending", [])):
            return Located("pending")
        h = await self.history(prompt_id)
        if isinstance(h, dict) and prompt_id in h:
            return Located("done", h[prompt_id])
        return Located("unknown")

    async def interrupt(self, prompt_id: str) -> None:
        # Targeted: ComfyUI interrupts only if this prompt is the one running, and the
        # delete takes it out of the pending queue if it has not started.
        await self._json("POST", "/interrupt", json={"prompt_id": prompt_id})
        await self.dequeue(prompt_id)

    async def dequeue(self, prompt_id: str) -> None:
        """Take the prompt out of the pending queue; ComfyUI ignores it for a run that started."""
        await self._json("POST", "/queue", json={"delete": [prompt_id]})

    @asynccontextmanager
    async def view(self, filename: str, subfolder: str, kind: str):
        """The response for one file ComfyUI saved, for streaming its body."""
        params = {"filename": filename, "subfolder": subfolder, "type": kind}
        try:
            async with self.s.get(
                self.base + "/view",
                params=params,
                headers=self.headers,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=60),
            ) as r:
                if r.status == 404:
                    raise FileGone(f"{kind}/{subfolder}/{filename}")
                if r.status != 200:
                    raise Unreachable(
                        f"ComfyUI /view {subfolder}/{filename} answered {r.status}", status=r.status
                    )
                yield r
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise Unreachable(f"ComfyUI /view {filename}: {type(exc).__name__}") from None

    async def upload_input(
        self,
        name: str,
        path: Path,
        overwrite: bool = True,
        content_type: str = "application/octet-stream",
    ) -> str:
        """Put a file in ComfyUI's input folder (works for a ComfyUI on another host too);
        returns the name a loader node takes. Without `overwrite`, ComfyUI keeps a file
        already there under that name and gives this one another ("photo (1).png")."""
        form = aiohttp.FormData()
        if overwrite:
            form.add_field("overwrite", "true")
        with open(path, "rb") as f:
            form.add_field("image", f, filename=name, content_type=content_type)
            status, body = await self._json("POST", "/upload/image", data=form)
        if status != 200 or not isinstance(body, dict):
            raise Unreachable(f"ComfyUI /upload/image answered {status}", status=status)
        saved, sub = body.get("name"), body.get("subfolder") or ""
        if not isinstance(saved, str) or not isinstance(sub, str):
            raise Malformed(f"ComfyUI /upload/image answered no file name: {str(body)[:200]}")
        return f"{sub}/{saved}" if sub else saved

    def websocket(self, client_id: str):
        ws_url = "ws" + self.base[4:] + "/ws"
        return self.s.ws_connect(
            ws_url,
            params={"clientId": client_id},
            headers=self.headers,
            heartbeat=20,
            max_msg_size=self.max_msg_size,
            timeout=aiohttp.ClientWSTimeout(ws_close=5),
        )


def rejected_error(body: dict, workflow: dict) -> dict:
    """The job.error for a prompt ComfyUI refused, with its node errors."""
    err: dict = body["error"] if isinstance(body.get("error"), dict) else {"message": str(body.get("error"))}
    node_errors = body.get("node_errors") or {}
    node_id = next(iter(node_errors), None)
    message = err.get("message") or "ComfyUI rejected the workflow"
    if node_id is not None:
        first = (node_errors[node_id].get("errors") or [{}])[0]
        message = (
            f"{message}: node {node_id} ({node_errors[node_id].get('class_type')}): "
            f"{first.get('message', '')} {first.get('details', '')}".strip()
        )
    return {
        "code": "invalid_workflow",
        "message": message,
        "node_id": node_id,
        "class_type": (workflow.get(node_id) or {}).get("class_type") if node_id else None,
        "traceback": None,
        "details": {"error": err, "node_errors": node_errors},
    }
