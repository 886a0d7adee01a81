"""Typed errors of comfy_jobs.

| exit code | meaning |
|---:|---|
| 2 | a setting is wrong (the message names the variable) |
| 3 | the ledger cannot be opened or written |

`Refused` and its kinds are what the job service says to a client's request: each carries
the v2 contract's error code, a message that says what to send instead, and details; the
HTTP adapters (auth_proxy/v2/) map each kind to one status.
"""

from __future__ import annotations


class JobsError(Exception):
    exit_code = 1


class ConfigError(JobsError):
    exit_code = 2


class LedgerError(JobsError):
    exit_code = 3


class Refused(JobsError):
    """A request the service will not carry out, in the contract's terms."""

    def __init__(self, code: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code, self.message, self.details = code, message, details


class Malformed(Refused):
    """A parameter or value no job can hold: a list's limit or cursor out of range, a
    number JSON cannot carry, inputs nested deeper than a run can follow."""

    def __init__(self, message: str, details: dict | None = None):
        super().__init__("invalid_request", message, details)


class Unacceptable(Refused):
    """The body is well-formed HTTP but not something that can be run or stored."""


class NotFound(Refused):
    pass


class Forbidden(Refused):
    """Something the caller's role may not do (a member's workflow reaching beyond their
    files: comfy_jobs/member_policy.py)."""


class Conflict(Refused):
    """The request collides with another one or with what is stored; `retry_after_s`: when
    trying the same again may succeed (None: it never will)."""

    def __init__(
        self, code: str, message: str, details: dict | None = None, retry_after_s: int | None = None
    ):
        super().__init__(code, message, details)
        self.retry_after_s = retry_after_s


class Stalled(Refused):
    """The client stopped sending the body it started."""

    def __init__(self, idle_s: float):
        super().__init__(
            "request_timeout",
            f"no byte of the body came for {idle_s:g} s; send the whole body without pausing",
        )


class IdempotencyKeyReuse(Unacceptable):
    """The same Idempotency-Key came with a different body."""

    def __init__(self, what: str = "request"):
        super().__init__(
            "idempotency_key_reuse",
            f"this Idempotency-Key was used for another {what}; use a new key for a new {what}",
        )


class AssetTooLarge(Unacceptable):
    def __init__(self, max_bytes: int):
        super().__init__(
            "too_large",
            f"the file is more than {max_bytes >> 20} MiB (COMFY_ASSET_MAX_MB); send a smaller one",
        )


class HashMismatch(Conflict):
    def __init__(self, computed: str, expected: str):
        super().__init__(
            "hash_mismatch",
            f"the bytes hash to {computed}, not {expected}; nothing was stored",
            {"computed": computed, "expected": expected},
        )


class Busy(Refused):
    """Too many of something at once; `retry_after_s`: when to try again."""

    def __init__(self, code: str, message: str, details: dict | None = None, retry_after_s: int = 10):
        super().__init__(code, message, details)
        self.retry_after_s = retry_after_s


class QueueFull(Busy):
    """Raised by the ledger; the service sets `retry_after_s` from recent run times."""

    def __init__(self, depth: int, limit: int):
        super().__init__(
            "queue_full",
            f"{depth} jobs are queued or running, the limit (COMFY_QUEUE_LIMIT) is {limit}; retry later",
            {"depth": depth, "limit": limit},
        )
        self.depth, self.limit = depth, limit


class TooManyWaiting(QueueFull):
    """One account's limit of waiting jobs (COMFY_JOBS_MAX_WAITING_PER_USER, or the one the
    admin set for it) is reached; raised by the ledger, answered as the contract's 429."""

    def __init__(self, owner: str, waiting: int, limit: int):
        Busy.__init__(
            self,
            "queue_full",
            f"{waiting} of your jobs are waiting to start, your limit is {limit}; "
            "retry once one has started, or cancel one",
            {"waiting": waiting, "limit": limit},
        )
        self.depth, self.limit = waiting, limit
