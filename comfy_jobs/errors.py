"""Typed errors of comfy_jobs.

| exit code | meaning |
|---:|---|
| 2 | a setting is wrong (the message names the variable) |
| 3 | the ledger cannot be opened or written |
"""

from __future__ import annotations


class JobsError(Exception):
    exit_code = 1


class ConfigError(JobsError):
    exit_code = 2


class LedgerError(JobsError):
    exit_code = 3


class IdempotencyKeyReuse(JobsError):
    """The same Idempotency-Key came with a different body."""


class AssetTooLarge(JobsError):
    pass


class HashMismatch(JobsError):
    pass
