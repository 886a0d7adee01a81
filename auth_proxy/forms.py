"""The small bodies the gate reads itself (the login and password forms, as form fields
or JSON), bounded before they are read."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from auth_proxy.errors import BadBody

# Form and JSON bodies the gate reads itself are a few hundred bytes; a larger one is not
# a login, and reading it would only cost memory.
BODY_LIMIT = 16 * 1024
FIELD_LIMIT = 1024


def too_large(size: int) -> web.HTTPRequestEntityTooLarge:
    exc = web.HTTPRequestEntityTooLarge(BODY_LIMIT, size)
    # Close rather than keep the connection: aiohttp would otherwise go on receiving (and
    # holding) the rest of a body nobody will read.
    exc.force_close()
    return exc


async def bounded_body(request: web.Request, limit: int) -> bytes | None:
    """The whole body, or None as soon as it grows past `limit` bytes (the rest unread): every
    body the gate reads itself goes through here, each caller answering in its own terms."""
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


async def small_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > BODY_LIMIT:
        raise too_large(request.content_length)
    body = await bounded_body(request, BODY_LIMIT)
    if body is None:
        raise too_large(BODY_LIMIT + 1)
    return body


async def read_fields(request: web.Request, names: tuple[str, ...]) -> tuple[dict[str, str], bool]:
    """The named text fields (those present) of a JSON object or a form, and whether it
    was JSON; BadBody for anything else, with what is wrong."""
    is_json = request.content_type == "application/json"
    data: Any  # a form's multidict, or whatever the JSON holds (checked below)
    if request.content_type == "multipart/form-data":
        if request.content_length is None or request.content_length > BODY_LIMIT:
            raise BadBody(f"send a form of at most {BODY_LIMIT} bytes with a Content-Length")
        data = await request.post()
    else:
        body = await small_body(request)
        try:
            data = json.loads(body) if is_json else dict(parse_qsl(body.decode(), keep_blank_values=True))
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than Python's stack
            raise BadBody(
                "the body is not valid JSON" if is_json else "the form is not valid UTF-8"
            ) from None
    if not isinstance(data, Mapping):
        raise BadBody("send a JSON object")
    fields = {}
    for name in names:
        if name not in data:
            continue
        value = data[name]
        if not isinstance(value, str):
            raise BadBody(f"{name} must be text")
        if len(value) > FIELD_LIMIT:
            raise BadBody(f"{name} is longer than {FIELD_LIMIT} characters")
        fields[name] = value
    return fields, is_json
