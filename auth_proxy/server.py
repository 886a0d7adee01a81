"""Serving the application on the public port, so that slow or many connections from one
client cannot take the file descriptors everyone else needs.

Three defences, each with its setting (docs/auth.md):
- a header deadline: a connection that has not sent a whole request's headers within
  AUTH_PROXY_HEADER_TIMEOUT is closed, and so is a keep-alive connection idle that long
  (aiohttp's keep-alive timer does both: it runs from the connection's start and closes it
  unless a whole request arrived);
- a per-client cap: at most AUTH_PROXY_MAX_CLIENT_CONNECTIONS open connections per client
  address (not for trusted proxies, which carry everyone's); further ones are answered
  429 and closed before they cost more than the accept;
- the soft RLIMIT_NOFILE raised to the hard limit at start (often 1024 against 1048576).

And requests aiohttp cannot parse are answered here too (`plain_errors`): aiohttp does so
before any hook of the application runs, with its version in `Server` and the offending
bytes in the body (a too-long Cookie header comes back with the session id in it).

The cap needs to see connections before aiohttp parses anything, so the listening socket is
opened here with a protocol that counts them and hands the rest to aiohttp's own request
handler; aiohttp offers no hook for that.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import resource
import signal
from collections import Counter
from http import HTTPStatus

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from auth_proxy.replies import SERVER_NAME
from auth_proxy.settings import Settings

log = logging.getLogger(__name__)
TOO_MANY = (
    b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    b"Content-Length: 38\r\n\r\ntoo many connections from this client\n"
)


def raise_open_files_limit() -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open files limit from %d to %d: %s", soft, target, exc)
    return soft, hard


class ConnectionCap:
    def __init__(self, per_client: int, trusted: tuple):
        self.per_client, self.trusted = per_client, trusted
        self.open: Counter[str] = Counter()

    def exempt(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.trusted)

    def protocol(self, inner: RequestHandler) -> CappedProtocol:
        return CappedProtocol(self, plain_errors(inner))


class PlainErrors(RequestHandler):
    """aiohttp's request handler, but its answers to requests it cannot parse (and to
    failures outside the application) name the status only: no version banner, no quoted
    request bytes."""

    __slots__ = ()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
        resp = super().handle_error(
            request, status, exc, f"{status} {phrase}: the request could not be read\n"
        )
        resp.headers["Server"] = SERVER_NAME
        return resp


def plain_errors(handler: RequestHandler) -> RequestHandler:
    # aiohttp's server makes the handler, and its __slots__ leave no room to replace a
    # method on the instance; the subclass adds no state, so it can take the instance over.
    handler.__class__ = PlainErrors
    return handler


class CappedProtocol(asyncio.Protocol):
    """aiohttp's request handler behind a count of its client's open connections."""

    def __init__(self, cap: ConnectionCap, inner: asyncio.Protocol):
        self.cap, self.inner = cap, inner
        self.client: str | None = None
        self.refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        address = peer[0] if isinstance(peer, tuple) else ""
        if not self.cap.exempt(address):
            if self.cap.open[address] >= self.cap.per_client:
                self.refused = True
                transport.write(TOO_MANY)  # type: ignore[attr-defined]
                transport.close()
                return
            self.client = address
            self.cap.open[address] += 1
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.refused:
            return
        if self.client is not None:
            self.cap.open[self.client] -= 1
            if self.cap.open[self.client] <= 0:
                del self.cap.open[self.client]
        self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self.refused:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return None if self.refused else self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


async def serve(app: web.Application, settings: Settings, **runner_args) -> None:
    """Serve until SIGTERM or SIGINT, then close connections and clean up the app."""
    soft, hard = raise_open_files_limit()
    log.info("open files limit: %d (hard %d)", soft, hard)
    runner = web.AppRunner(app, keepalive_timeout=settings.header_timeout_s, **runner_args)
    await runner.setup()
    cap = ConnectionCap(settings.max_client_connections, settings.trusted_proxies)
    loop = asyncio.get_running_loop()
    handler = runner.server
    assert handler is not None
    server = await loop.create_server(
        lambda: cap.protocol(handler()), settings.host, settings.port, reuse_address=True, backlog=1024
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("listening on %s:%d, relaying to %s", settings.host, settings.port, settings.upstream)
    try:
        await stop.wait()
    finally:
        log.info("stopping: closing connections")
        server.close()
        await runner.cleanup()
