"""State records: one small JSON file per model file, under <models-dir>/.model_sync/state/.

A record says "this local file (size, mtime, inode) was verified against this source
identity". A warm start compares records with a stat() of each file and the source's
identity, so unchanged multi-GB files are never read again.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from comfy_stack.files import read_json, remove, write_json


@dataclass(frozen=True)
class LocalStat:
    size: int
    mtime_ns: int
    ino: int


@dataclass(frozen=True)
class StateRecord:
    dest: str
    source: str
    identity: str
    size: int
    mtime_ns: int
    ino: int
    sha256: str | None = None
    verified_at: float = 0.0


def local_stat(path: Path) -> LocalStat | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return LocalStat(st.st_size, st.st_mtime_ns, st.st_ino)


class StateStore:
    def __init__(self, state_dir: Path):
        self.root = state_dir / "state"

    def _path(self, dest: str) -> Path:
        return self.root / f"{dest}.json"

    def get(self, dest: str) -> StateRecord | None:
        data = read_json(self._path(dest))
        if not data:
            return None
        try:
            return StateRecord(**data)
        except TypeError:
            return None

    def put(self, dest: str, source: str, identity: str, path: Path, sha256: str | None) -> StateRecord:
        st = local_stat(path)
        assert st is not None
        rec = StateRecord(dest, source, identity, st.size, st.mtime_ns, st.ino, sha256, time.time())
        # No fsync: a lost record only costs a re-verification on the next start.
        write_json(self._path(dest), asdict(rec), fsync=False)
        return rec

    def remove(self, dest: str) -> None:
        remove(self._path(dest))

    def all_dests(self) -> list[str]:
        out: list[str] = []
        if not self.root.is_dir():
            return out
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.endswith(".json"):
                    rel = os.path.relpath(os.path.join(dirpath, name), self.root)
                    out.append(rel[:-5].replace(os.sep, "/"))
        return out
