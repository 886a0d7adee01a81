"""The audit log: who logged in (and who failed), who ran which workflow, who installed or
updated nodes, who changed accounts and tokens. JSON lines in AUTH_PROXY_STATE_DIR/audit.log
(on the data volume), rotated at ROTATE_BYTES with KEEP older files, readable by the admin
on the admin page (auth_proxy/admin.py) and with `python -m auth_proxy audit`.

Written with the standard library's RotatingFileHandler: it rotates by size safely within
one process. Each gateway replica writes its own file.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import time
from collections import deque
from pathlib import Path

FILE = "audit.log"
ROTATE_BYTES = 10 << 20
KEEP = 5
log = logging.getLogger(__name__)


class AuditLog:
    def __init__(self, state_dir: Path):
        self.path = state_dir / FILE
        self._logger = logging.getLogger(f"auth_proxy.audit.{id(self)}")
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        self._handler: logging.Handler | None = None

    def _open(self) -> logging.Handler | None:
        if self._handler is None:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600)
                os.close(fd)
                self._handler = logging.handlers.RotatingFileHandler(
                    self.path, maxBytes=ROTATE_BYTES, backupCount=KEEP, encoding="utf-8"
                )
            except OSError as exc:
                log.warning("cannot write the audit log %s: %s", self.path, exc.strerror)
                return None
            self._handler.setFormatter(logging.Formatter("%(message)s"))
            self._logger.addHandler(self._handler)
        return self._handler

    def write(self, event: str, **fields: object) -> None:
        if self._open() is None:
            return
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "event": event}
        entry.update({k: v for k, v in fields.items() if v is not None})
        self._logger.info(json.dumps(entry, ensure_ascii=False, sort_keys=False))

    def tail(self, n: int = 200) -> list[dict]:
        """The newest `n` entries, newest first (this file only, not the rotated ones)."""
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                lines = deque(f, maxlen=n)
        except FileNotFoundError:
            return []
        out = []
        for line in reversed(lines):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def close(self) -> None:
        if self._handler is not None:
            self._logger.removeHandler(self._handler)
            self._handler.close()
            self._handler = None


def record(gate, event: str, **fields: object) -> None:
    """Write one entry in the gate's audit log."""
    gate.audit.write(event, **fields)
