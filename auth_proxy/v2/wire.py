"""The v2 contract on the wire: who asks (the gate's login as the service's Caller), its
error envelope (each comfy_jobs refusal kind has one status), JSON bodies read with a
limit, and the wrapper that turns a refusal raised by the service into its answer."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable

from aiohttp import web

from auth_proxy.forms import bounded_body
from auth_proxy.services import WHO
from comfy_jobs.errors import Busy, Conflict, Forbidden, Malformed, NotFound, Refused, Stalled, Unacceptable
from comfy_jobs.model import Caller

MAX_BODY = 32 << 20  # a workflow with embedded data; the gate's 1 MiB is for its forms
STATUS: dict[type[Refused], int] = {
    Malformed: 400,
    NotFound: 404,
    Forbidden: 403,
    Stalled: 408,
    Conflict: 409,
    Unacceptable: 422,
    Busy: 429,
}
# The gate's own refusals (a JSON `{"error": "text"}`), in the contract's codes.
CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    421: "misdirected_request",
    429: "too_many_requests",
    503: "unavailable",
}


def caller_of(request: web.Request) -> Caller:
    """The account the gate proved (never anything the client says) and its role."""
    who = request[WHO]
    return Caller(who.user, who.is_admin)


def error(status: int, code: str, message: str, details: dict | None = None, **headers: str) -> web.Response:
    body = {"error": {"code": code, "message": message, "details": details}}
    return web.json_response(body, status=status, headers=headers)


def refusal(exc: Refused) -> web.Response:
    status = next(s for kind, s in STATUS.items() if isinstance(exc, kind))
    retry_after = getattr(exc, "retry_after_s", None)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    resp = error(status, exc.code, exc.message, exc.details, **headers)
    if isinstance(exc, Stalled):
        resp.force_close()  # the rest of that body is not waited for either
    return resp


def handler(
    fn: Callable[..., Awaitable[web.StreamResponse]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """An aiohttp handler for `fn(request, **path_parts)`, answering its refusals."""

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            return await fn(request, **request.match_info)
        except Refused as exc:
            return refusal(exc)

    return handle


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e999: JSON has no infinity to send it back as
        raise Malformed(f"the number {text[:40]} is too large for JSON; send a finite number")
    return value


def _no_constant(name: str) -> float:
    raise Malformed(f"{name} is not JSON; send a finite number")


def parse_json(data: bytes) -> object:
    """A JSON body as the contract takes it: no NaN or infinities (they would be stored,
    then sent back as something no JSON parser reads)."""
    try:
        return json.loads(data or b"null", parse_float=_finite, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
        raise Unacceptable("invalid_request", "the body is not valid JSON") from None


async def read_json(request: web.Request, limit: int = MAX_BODY) -> object:
    data = await bounded_body(request, limit)
    if data is None:
        raise Unacceptable("invalid_request", f"the body is over {limit >> 20} MiB")
    return parse_json(data)
