"""Whether ComfyUI (and the job ledger) are ready, for /readyz.

/readyz is open to anyone, and each check costs ComfyUI a connection (400 at once pushed it
into EMFILE): ComfyUI is asked at most once a second however many ask, one check at a
time, callers meanwhile sharing its answer. Only a refused connection (nothing listens yet:
ComfyUI is starting or restarting) is not kept: it cost ComfyUI nothing, and the next
/readyz asks again, so that ready follows ComfyUI's first answer by one check, not by up to
a second. The job ledger's check is shared the same way by concurrent callers but not kept,
so that a broken ledger shows at the next /readyz.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import aiohttp

T = TypeVar("T")
# nothing listens on ComfyUI's port (yet)
REFUSED = "ComfyUI is not answering (nothing listens on its port yet)"


class Shared(Generic[T]):
    """One run of a check at a time; callers meanwhile await that run; its answer is kept
    for `ttl_s` seconds, unless `keep` says not to keep it."""

    def __init__(self, ttl_s: float, keep: Callable[[T], bool] = lambda _answer: True) -> None:
        self.ttl_s = ttl_s
        self.keep = keep
        self._answer: tuple[float, T] | None = None
        self._running: asyncio.Future[T] | None = None

    async def __call__(self, check: Callable[[], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        if self._answer is not None and loop.time() - self._answer[0] < self.ttl_s:
            return self._answer[1]
        if self._running is None:
            self._running = asyncio.ensure_future(check())
        running = self._running
        try:
            answer = await asyncio.shield(running)
        finally:
            if self._running is running and running.done():
                self._running = None
        self._answer = (loop.time(), answer) if self.keep(answer) else None
        return answer


class Readiness:
    def __init__(self) -> None:
        self._comfyui: Shared[tuple[bool, str]] = Shared(1.0, keep=lambda answer: answer[1] != REFUSED)
        self._also: Shared[str | None] = Shared(0.0)

    async def get(
        self, gate, also: Callable[[], Awaitable[str | None]] | None = None, comfyui: bool = True
    ) -> tuple[bool, str]:
        """(ready, why); `also`: a further check (the job ledger's) that returns what is
        wrong, or None; `comfyui`: False on a cluster's gateway, which has no ComfyUI."""
        ok, reason = await self._comfyui(lambda: self._ask_comfyui(gate)) if comfyui else (True, "")
        if ok and also is not None and (problem := await self._also(also)):
            return False, problem
        return ok, reason

    @staticmethod
    async def _ask_comfyui(gate) -> tuple[bool, str]:
        assert gate.client is not None
        try:
            async with gate.client.get(
                gate.s.upstream + "/system_stats", timeout=aiohttp.ClientTimeout(total=3)
            ) as r:
                return r.status == 200, f"ComfyUI answered {r.status}"
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, ConnectionRefusedError):
                return False, REFUSED
            return False, f"ComfyUI is not answering ({type(exc).__name__})"
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            # Not the address: /readyz is public, and where ComfyUI listens is not.
            return False, f"ComfyUI is not answering ({type(exc).__name__})"
