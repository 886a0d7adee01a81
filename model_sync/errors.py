"""Typed errors of model_sync, each with the exit code documented in docs/sync-semantics.md."""

from __future__ import annotations


class SyncError(Exception):
    """Base class: `str(err)` says what went wrong and what to do next."""

    exit_code = 1


class UsageError(SyncError):
    exit_code = 2


class ManifestError(SyncError):
    exit_code = 3


class CredentialsError(SyncError):
    exit_code = 4


class NotFoundError(SyncError):
    exit_code = 5


class EndpointError(SyncError):
    exit_code = 6


class DiskSpaceError(SyncError):
    exit_code = 7


class VerificationError(SyncError):
    exit_code = 8


class TransferError(SyncError):
    """A transfer failed after every retry (or with an error that retrying cannot fix)."""

    exit_code = 9


class LockTimeoutError(SyncError):
    exit_code = 10


class DeleteRefusedError(SyncError):
    exit_code = 11


class UnplaceableError(SyncError):
    """An object that cannot be placed under its name (too long, a file and a folder at one
    name, something else in its way). It is skipped and the rest of the run goes on; a run
    whose only failures are these ends with exit 12: a partial sync."""

    exit_code = 12


class TransientError(SyncError):
    """A failure worth retrying: 5xx, reset, timeout, truncated body. Never escapes the retry loop
    unwrapped: after the last attempt it becomes a TransferError."""

    exit_code = 9


class SourceChangedError(TransientError):
    """The object was replaced after its metadata was read (a 412 to If-Match, another size):
    the retry loop re-reads its metadata and starts that file over."""


def for_status(
    status: int, what: str, hint: str, *, denied: str = "", missing: str = "HTTP 404", detail: str = ""
) -> SyncError:
    """What an HTTP status from a source means, for every backend that speaks plain HTTP
    (HTTPS URLs, the Hugging Face hub): refused credentials, a missing file, a failure worth
    retrying (429, 5xx), or one that retrying cannot fix. `hint` says what to check."""
    if status in (401, 403):
        return CredentialsError(f"{what}: HTTP {status}{denied}; {hint}")
    if status == 404:
        return NotFoundError(f"{what}: {missing}; {hint}")
    if status == 429 or status >= 500:
        return TransientError(f"{what}: HTTP {status}")
    return TransferError(f"{what}: HTTP {status}" + (f": {detail}" if detail else ""))


EXIT_CODES = {
    0: "every selected file is present and verified",
    1: "unexpected internal error (a bug: please report it with the log)",
    UsageError.exit_code: "bad command line or settings",
    ManifestError.exit_code: "malformed manifest",
    CredentialsError.exit_code: "credentials rejected or missing",
    NotFoundError.exit_code: "bucket, object, repository or URL not found",
    EndpointError.exit_code: "endpoint unreachable",
    DiskSpaceError.exit_code: "not enough free space in the models directory",
    VerificationError.exit_code: "a file failed verification on every attempt (pin: a source differs from the manifest)",
    TransferError.exit_code: "a transfer failed after every retry",
    LockTimeoutError.exit_code: "another process held a file's lock for too long",
    DeleteRefusedError.exit_code: "--delete would remove more files than the cap allows",
    UnplaceableError.exit_code: "partial: some objects cannot be placed under their names (each is "
    "logged with the reason) and were skipped; every other file is present and verified",
}
