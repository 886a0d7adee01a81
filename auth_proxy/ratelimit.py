"""Failed-login limits per client address (strict) and for the admin's name across all
clients (softer), with growing delays.

After `free` failures, each further attempt must wait 2**(n-free) seconds (up to the
limit's cap) since the last failure; until then the answer is 429 with Retry-After,
whether or not the password would have been right. A key's failures are forgotten only
`window_s` after its delay has run out with no new failure; the window is at least as
long as the longest delay, so waiting out a delay, even the longest, never resets the
count.

The strict limit is per client so that one attacker cannot lock the admin out of other
clients; the softer one on the admin's name slows an attacker who spreads guesses over
many addresses, with a cap short enough that the admin still gets in. Only one check runs
per key at a time (`begin`/`end`), and the table holds at most `max_keys` keys (the least
recently failed go first), so neither a burst nor a flood of addresses outgrows it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Limit:
    free: int
    cap_s: float


@dataclass
class _Record:
    failures: list[float] = field(default_factory=list)


class LoginLimiter:
    def __init__(
        self,
        free: int = 5,
        window_s: float = 900.0,
        cap_s: float = 900.0,
        max_keys: int = 10_000,
        user_free: int | None = None,
        user_cap_s: float = 60.0,
    ):
        self.window_s, self.max_keys = max(window_s, cap_s), max_keys
        self.limits = {"ip": Limit(free, cap_s), "user": Limit(user_free or free * 10, user_cap_s)}
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._in_flight: set[str] = set()

    def _limit(self, key: str) -> Limit:
        return self.limits.get(key.partition(":")[0], self.limits["ip"])

    def _delay(self, key: str, failures: int) -> float:
        limit = self._limit(key)
        extra = failures - limit.free
        return min(limit.cap_s, 2.0 ** min(extra, 30)) if extra >= 0 else 0.0

    def _failures(self, key: str, now: float) -> list[float]:
        rec = self._records.get(key)
        if rec is None:
            return []
        if now - rec.failures[-1] >= self._delay(key, len(rec.failures)) + self.window_s:
            del self._records[key]
            return []
        return rec.failures

    def retry_after(self, keys: list[str], now: float | None = None) -> float:
        """Seconds the caller must wait before another attempt (0: go ahead)."""
        now = time.time() if now is None else now
        wait = 0.0
        for key in keys:
            fails = self._failures(key, now)
            if fails:
                wait = max(wait, fails[-1] + self._delay(key, len(fails)) - now)
        return max(0.0, wait)

    def failed(self, keys: list[str], now: float | None = None) -> None:
        now = time.time() if now is None else now
        for key in keys:
            rec = self._records.pop(key, None) or _Record()
            # Only the newest failures decide a delay; older ones need not be kept.
            rec.failures = [*rec.failures[-64:], now]
            self._records[key] = rec
        while len(self._records) > self.max_keys:
            self._records.popitem(last=False)

    def confirm(self, keys: list[str], now: float | None = None) -> None:
        """A failure counted before its check is confirmed: its delay runs from now, the
        end of the check, not from its start."""
        now = time.time() if now is None else now
        for key in keys:
            rec = self._records.get(key)
            if rec is not None:
                rec.failures[-1] = max(rec.failures[-1], now)

    def succeeded(self, keys: list[str]) -> None:
        for key in keys:
            self._records.pop(key, None)

    def begin(self, keys: list[str]) -> bool:
        """Claim the keys for one check; False when a check for any of them is running."""
        if any(k in self._in_flight for k in keys):
            return False
        self._in_flight.update(keys)
        return True

    def end(self, keys: list[str]) -> None:
        self._in_flight.difference_update(keys)
