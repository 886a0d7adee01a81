"""The contract's error envelope on every v2 answer, including the gate's own refusals."""

from __future__ import annotations

import json

from aiohttp import web

from auth_proxy.v2.routes import owns
from auth_proxy.v2.wire import CODES, error

KEPT_HEADERS = ("allow", "retry-after", "www-authenticate")


@web.middleware
async def v2_envelope(request: web.Request, handler):
    """The gate answers `{"error": "text"}` and aiohttp's router raises its 404 and 405; on
    v2 paths the contract wants `{"error": {"code", "message", "details"}}`. Right inside the
    error counter (auth_proxy/middlewares.py PIPELINE), so it sees every refusal of the gate."""
    try:
        resp = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or not owns(request.path):
            raise
        return error(
            exc.status, CODES.get(exc.status, "error"), _message(request, exc), None, **_kept(exc.headers)
        )
    if (
        resp.status >= 400
        and owns(request.path)
        and isinstance(resp, web.Response)
        and isinstance(resp.body, (bytes, bytearray))
    ):
        try:
            body = json.loads(resp.body)
        except (ValueError, TypeError):
            return resp
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return error(
                resp.status, CODES.get(resp.status, "error"), body["error"], None, **_kept(resp.headers)
            )
    return resp


def _kept(headers) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() in KEPT_HEADERS}


def _message(request: web.Request, exc: web.HTTPException) -> str:
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return f"{request.method} is not allowed on {request.path}; allowed: {', '.join(sorted(exc.allowed_methods))}"
    if isinstance(exc, web.HTTPNotFound):
        return f"no v2 route {request.method} {request.path}"
    return exc.reason
