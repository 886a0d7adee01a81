"""How a name from a bucket is shown in logs and on a terminal: keys are chosen by whoever
writes the bucket, and an ESC in one would otherwise reach the terminal of whoever reads the
log (colours, cursor moves, a forged log line after a line break)."""

from __future__ import annotations

import logging


def printable(text: str) -> str:
    """`text` with each character a terminal would act on (ESC and the other controls, line
    breaks, bidirectional overrides: what str.isprintable refuses) written as its Python
    escape, e.g. `\\x1b`; everything else as it is."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


class Formatter(logging.Formatter):
    """A log formatter that passes every message and traceback line through `printable`:
    names reach log lines through messages, exceptions and library errors alike."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))

    def formatException(self, ei) -> str:
        return "\n".join(printable(line) for line in super().formatException(ei).splitlines())
