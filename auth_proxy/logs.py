"""The proxy's logging: one format, and nothing secret in any line.

aiohttp's server logs a malformed request with its parser's error, which quotes the bytes
it choked on (a Cookie or Authorization header, a `?token=` in the request line) and a
traceback. Every record therefore passes a filter on the handler that (1) turns aiohttp's
"Error handling request" into one line naming the client and the kind of error, without
the quoted bytes or a traceback, and (2) masks anything shaped like a credential in any
record's message and traceback.
"""

from __future__ import annotations

import logging
import re
import traceback

MASK = "***"
# Anything shaped like a credential: query tokens, the proxy's API tokens, Authorization
# values, the session cookie, and password fields of a form or JSON body.
SECRETS = [
    re.compile(r"(?i)([?&;]token=)[^&\s'\"]*"),
    re.compile(r"cst_[A-Za-z0-9_-]+"),
    re.compile(r"(?i)\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)(comfy_session=)[^;\s'\"]*"),
    re.compile(r"(?i)((?:authorization|cookie|set-cookie)\s*[:=]\s*)[^\r\n'\"]*"),
    re.compile(
        r"(?i)((?:password|new_password|current_password|repeat_password)[\"']?\s*[:=]\s*[\"']?)[^&\s'\"]*"
    ),
]


def redact(text: str) -> str:
    for pattern in SECRETS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + MASK, text)
    return text


class Redact(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("aiohttp.server") and record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            # The parser's message quotes the request's bytes; its type says enough.
            record.msg = (
                f"{record.getMessage()}: {type(exc).__name__} (a malformed request; details withheld)"
            )
            record.args = ()
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            return True
        message = redact(record.getMessage())
        if record.exc_info:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        record.msg, record.args = message, ()
        return True


def configure(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(Redact())
