"""Failed-login limits per client address and per user name, with growing delays.

After `free` failures inside `window_s`, each further attempt must wait 2**(n-free)
seconds (capped at 15 minutes) since the last failure; until then the answer is 429 with
Retry-After, whether or not the password would have been right.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class _Record:
    failures: list[float] = field(default_factory=list)


class LoginLimiter:
    def __init__(self, free: int = 5, window_s: float = 300.0, cap_s: float = 900.0):
        self.free, self.window_s, self.cap_s = free, window_s, cap_s
        self._records: dict[str, _Record] = {}

    def _recent(self, key: str, now: float) -> list[float]:
        rec = self._records.get(key)
        if rec is None:
            return []
        rec.failures = [t for t in rec.failures if now - t < max(self.window_s, self.cap_s)]
        return rec.failures

    def retry_after(self, keys: list[str], now: float | None = None) -> float:
        """Seconds the caller must wait before another attempt (0: go ahead)."""
        now = time.time() if now is None else now
        wait = 0.0
        for key in keys:
            fails = [t for t in self._recent(key, now) if now - t < self.window_s]
            extra = len(fails) - self.free
            if extra >= 0:
                delay = min(self.cap_s, 2.0 ** extra)
                wait = max(wait, fails[-1] + delay - now)
        return max(0.0, wait)

    def failed(self, keys: list[str], now: float | None = None) -> None:
        now = time.time() if now is None else now
        for key in keys:
            self._records.setdefault(key, _Record()).failures.append(now)

    def succeeded(self, keys: list[str]) -> None:
        for key in keys:
            self._records.pop(key, None)
