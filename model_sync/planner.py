"""The pure planner: what to fetch, verify, skip or delete. No I/O happens here.

Inputs are plain data gathered by the caller (manifest entries, a remote listing or stat
results, state records, local stat results) so every decision can be tested and printed by
--dry-run before anything is touched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum

from .errors import DeleteRefusedError, ManifestError, UsageError
from .manifest import Manifest, check_destination
from .state import LocalStat, StateRecord
from .uris import SourceURI, parse_uri

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    dest: str  # "<folder>/<path>", relative to the models directory
    source: SourceURI
    size: int | None = None  # from the manifest
    sha256: str | None = None


@dataclass(frozen=True)
class RemoteObject:
    size: int
    identity: str  # what "unchanged" compares: ETag, CRC64, commit+etag, ...
    etag: str | None = None
    crc64: str | None = None
    sha256: str | None = None  # when the store publishes it (the hub's LFS ETag)
    md5: str | None = None  # single-part ETag of an S3 object
    crc32: int | None = None  # an S3 object's full-object CRC32 checksum
    listed: bool = False  # from a listing, which may lack checksums (OSS has no CRC there)
    revision: str | None = None  # the commit an hf:// revision resolved to (for `pin`)


class Action(str, Enum):
    SKIP = "skip"  # state record and local file match the remote: not read at all
    VERIFY = "verify"  # file present: hash it against the remote, fetch only on mismatch
    FETCH = "fetch"
    REFUSE = "refuse"  # the object cannot be placed under its name (placement.py): skipped


@dataclass(frozen=True)
class Step:
    item: Item
    action: Action
    reason: str
    remote: RemoteObject


def select_files(manifest: Manifest, profiles: tuple[str, ...], from_prefix: str | None) -> list[Item]:
    """Manifest entries of the selected profiles (all entries when none is given).

    An entry with no profiles belongs to every selection. With `from_prefix`, the file
    comes from PREFIX/<key> instead of its own `source`.
    """
    unknown = [p for p in profiles if p not in manifest.profiles]
    if unknown:
        raise UsageError(
            f"unknown profile(s) {', '.join(unknown)}: the manifest declares "
            f"{', '.join(sorted(manifest.profiles)) or 'none'} (check --profile / MODEL_PROFILES)"
        )
    prefix = None
    if from_prefix:
        try:
            prefix = parse_uri(from_prefix, prefix=True)
        except ManifestError as exc:
            raise UsageError(f"--from / MODEL_SYNC_FROM: {exc}") from None
    chosen = set(profiles)
    items = []
    for f in manifest.files:
        if chosen and f.profiles and not chosen & set(f.profiles):
            continue
        source = prefix.child(f.key) if prefix else f.source
        items.append(Item(f.dest, source, f.size, f.sha256))
    return items


def select_mirror(
    prefix: SourceURI, keys: list[str], folders: frozenset[str], extensions: frozenset[str]
) -> list[Item]:
    """Every `<folder>/<path>` under a mirrored prefix that ComfyUI would load."""
    items = []
    for rel in sorted(keys):
        folder, _, path = rel.partition("/")
        try:
            check_destination(folder, path, folders, extensions, f"{prefix.child(rel)}")
        except ManifestError as exc:
            log.warning("not mirrored: %s", exc)
            continue
        items.append(Item(rel, prefix.child(rel)))
    return items


def decide(
    item: Item, remote: RemoteObject, record: StateRecord | None, local: LocalStat | None, verify: bool
) -> Step:
    """What to do with one file; "unchanged" is defined in docs/sync-semantics.md."""
    if item.size is not None and item.size != remote.size:
        return Step(
            item,
            Action.FETCH,
            f"manifest size {item.size} != source size {remote.size}"
            " (the fetch will fail verification: fix the manifest)",
            remote,
        )
    if local is None:
        return Step(item, Action.FETCH, "missing", remote)
    if record is None:
        if local.size == remote.size:
            return Step(item, Action.VERIFY, "present without a state record", remote)
        return Step(item, Action.FETCH, "present with a different size", remote)
    if record.identity != remote.identity or record.size != remote.size:
        return Step(item, Action.FETCH, "source changed", remote)
    if (local.size, local.mtime_ns, local.ino) != (record.size, record.mtime_ns, record.ino):
        return Step(item, Action.VERIFY, "local file changed since it was verified", remote)
    if item.sha256 and record.sha256 != item.sha256:
        return Step(item, Action.VERIFY, "manifest sha256 not yet checked", remote)
    if verify:
        return Step(item, Action.VERIFY, "--verify", remote)
    return Step(item, Action.SKIP, "unchanged", remote)


def plan_deletions(items: list[Item], recorded: list[str], delete_max: int) -> list[str]:
    """Files model_sync placed earlier (they have a state record) that the selection no
    longer names. Files a person put there by hand have no record and are never deleted."""
    wanted = {i.dest for i in items}
    doomed = sorted(d for d in recorded if d not in wanted)
    if len(doomed) > delete_max:
        raise DeleteRefusedError(
            f"--delete would remove {len(doomed)} files (cap {delete_max}: MODEL_SYNC_DELETE_MAX); "
            f"first ones: {', '.join(doomed[:5])}. Check --profile/--from, or raise the cap."
        )
    return doomed


def describe(steps: list[Step], deletions: list[str]) -> list[str]:
    """Human-readable plan lines for --dry-run."""
    lines = [
        f"{s.action.value:6} {s.item.dest}  <- {s.item.source}  ({s.remote.size} bytes; {s.reason})"
        for s in steps
    ]
    lines += [f"delete {d}" for d in deletions]
    fetch = sum(s.remote.size for s in steps if s.action is Action.FETCH)
    lines.append(
        f"plan: {sum(s.action is Action.FETCH for s in steps)} to fetch ({fetch} bytes), "
        f"{sum(s.action is Action.VERIFY for s in steps)} to verify, "
        f"{sum(s.action is Action.SKIP for s in steps)} unchanged, {len(deletions)} to delete"
        + (
            f", {refused} refused (cannot be placed)"
            if (refused := sum(s.action is Action.REFUSE for s in steps))
            else ""
        )
    )
    return lines
