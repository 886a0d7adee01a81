"""`python -m model_sync pin`: write each source's size, sha256 and Hugging Face commit
into the manifest, so later syncs verify every byte and fetch exactly what was pinned.

The figures come from the sources themselves (one HEAD per file: the hub reports an LFS
file's sha256 as its ETag, its size, and the commit a branch points at; OSS/S3/HTTPS
report sizes). The manifest is edited with ruamel.yaml's round-trip mode so its comments
and layout survive; PyYAML would drop them.
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML

from comfy_stack.files import write_atomic

from .errors import ManifestError, VerificationError
from .manifest import load_manifest, parse_manifest
from .planner import RemoteObject, select_files
from .uris import SourceURI

log = logging.getLogger("model_sync.pin")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass
class Change:
    dest: str
    field: str
    old: object
    new: object

    def __str__(self) -> str:
        return f"{self.dest}: {self.field} {self.old if self.old is not None else '(none)'} -> {self.new}"


def pinned_source(source: SourceURI, remote: RemoteObject) -> str:
    """An hf:// source at the commit its revision resolved to; other sources as they are."""
    if source.scheme == "hf" and remote.revision and not _COMMIT.match(source.revision):
        return str(SourceURI("hf", source.bucket, source.key, remote.revision))
    return str(source)


def plan(manifest_path: Path, profiles: tuple[str, ...], stat_all) -> tuple[list[Change], list[Change]]:
    """(changes to write, conflicts): a conflict is a size or sha256 already in the manifest
    that the source no longer matches; `stat_all(items)` gives each item's RemoteObject."""
    items = select_files(load_manifest(manifest_path), profiles, None)
    remotes = stat_all(items)
    changes: list[Change] = []
    conflicts: list[Change] = []
    for item in items:
        remote = remotes[item.dest]
        for field, old, new in (("size", item.size, remote.size), ("sha256", item.sha256, remote.sha256)):
            if new is None or old == new:
                continue
            (conflicts if old is not None else changes).append(Change(item.dest, field, old, new))
        source = pinned_source(item.source, remote)
        if source != str(item.source):
            changes.append(Change(item.dest, "source", str(item.source), source))
    return changes, conflicts


def write(manifest_path: Path, changes: list[Change]) -> None:
    """Apply changes to the manifest file in place (atomically), keeping its comments."""
    yaml = YAML()  # round-trip mode
    yaml.width = 4096  # never fold a long source URI
    yaml.indent(mapping=2, sequence=4, offset=2)
    doc = yaml.load(manifest_path.read_text(encoding="utf-8"))
    by_dest = {f"{e['folder']}/{e['path']}": e for e in doc["files"]}
    for change in changes:
        entry = by_dest[change.dest]
        if change.field in entry:
            entry[change.field] = change.new
        else:  # keep the usual field order: folder, path, source, size, sha256, profiles
            keys = list(entry)
            after = "size" if change.field == "sha256" and "size" in keys else "source"
            entry.insert(keys.index(after) + 1, change.field, change.new)
    out = io.StringIO()
    yaml.dump(doc, out)
    try:  # never leave a manifest model_sync cannot read
        parse_manifest(YAML(typ="safe").load(out.getvalue()), str(manifest_path))
    except ManifestError as exc:
        raise ManifestError(f"pinning would write an invalid manifest ({exc}); nothing changed") from None
    write_atomic(manifest_path, out.getvalue().encode("utf-8"), mode=manifest_path.stat().st_mode & 0o7777)


def pin(
    manifest_path: Path, profiles: tuple[str, ...], stat_all, *, update: bool, dry_run: bool
) -> list[Change]:
    changes, conflicts = plan(manifest_path, profiles, stat_all)
    for c in conflicts:
        log.warning("source differs from the manifest: %s", c)
    if conflicts and not update:
        raise VerificationError(
            f"{len(conflicts)} pinned value(s) no longer match their sources ({conflicts[0]}); "
            "check that the source is the file you meant, then rerun with --update to accept"
        )
    todo = changes + (conflicts if update else [])
    if todo and not dry_run:
        write(manifest_path, todo)
    return todo
