"""Whether ComfyUI is ready, for /readyz."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp


class Readiness:
    """Whether ComfyUI answers, asked at most once a second however many ask: /readyz is
    open to anyone, and each check costs ComfyUI a connection (400 at once pushed it into
    EMFILE). One check runs at a time; callers meanwhile share its answer."""

    TTL_S = 1.0

    def __init__(self) -> None:
        self._answer: tuple[float, bool, str] | None = None
        self._running: asyncio.Future | None = None

    async def get(self, gate, also: Callable[[], Awaitable[str | None]] | None = None) -> tuple[bool, str]:
        """`also`: a further check (the job ledger's) answered with ComfyUI's, under the
        same cache: it returns what is wrong, or None."""
        now = asyncio.get_running_loop().time()
        if self._answer and now - self._answer[0] < self.TTL_S:
            return self._answer[1], self._answer[2]
        if self._running is None:
            self._running = asyncio.ensure_future(self._check(gate, also))
        try:
            ok, reason = await asyncio.shield(self._running)
        finally:
            if self._running is not None and self._running.done():
                self._running = None
        return ok, reason

    async def _check(self, gate, also) -> tuple[bool, str]:
        assert gate.client is not None
        try:
            async with gate.client.get(gate.s.upstream + "/system_stats",
                                       timeout=aiohttp.ClientTimeout(total=3)) as r:
                answer = (r.status == 200, f"ComfyUI answered {r.status}")
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            # Not the address: /readyz is public, and where ComfyUI listens is not.
            answer = (False, f"ComfyUI is not answering ({type(exc).__name__})")
        if answer[0] and also is not None and (problem := await also()):
            answer = (False, problem)
        self._answer = (asyncio.get_running_loop().time(), *answer)
        return answer
