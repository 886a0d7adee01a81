"""Copy the bundled UI workflows into ComfyUI's user workflows folder, never over a
user's edits.

A record (`.comfy-stack-installed.json`) holds the sha256 of each file as we installed
it. A file is (re)written only when it is absent or still exactly what we installed, so a
newer bundled version replaces an untouched copy, and an edited copy is left alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from comfy_stack.files import SHARED, copy_atomic, write_json

log = logging.getLogger(__name__)
RECORD = ".comfy-stack-installed.json"


@dataclass
class InstallReport:
    installed: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    kept_user_edits: list[str] = field(default_factory=list)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def install(bundled: Path, dest: Path) -> InstallReport:
    report = InstallReport()
    if not bundled.is_dir():
        return report
    dest.mkdir(parents=True, exist_ok=True)
    record_path = dest / RECORD
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        record = {}
    for src in sorted(bundled.glob("*.json")):
        target = dest / src.name
        new = _sha(src)
        if target.exists():
            current = _sha(target)
            if current == new:
                record[src.name] = new
                continue
            if record.get(src.name) != current:
                report.kept_user_edits.append(src.name)
                continue
            report.updated.append(src.name)
        else:
            report.installed.append(src.name)
        copy_atomic(src, target, mode=SHARED)
        record[src.name] = new
    write_json(record_path, record, indent=1, mode=SHARED)
    if report.kept_user_edits:
        log.info("kept your edited workflows: %s", ", ".join(report.kept_user_edits))
    return report
