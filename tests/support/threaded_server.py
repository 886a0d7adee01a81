"""The start/stop of the suite's threaded HTTP stand-ins (fault relay, OSS adapter, hub),
written once: a ThreadingHTTPServer on a free loopback port, served from a daemon thread."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, as the clients under test expect; no access log on stderr.
    `owner` is the stand-in object whose state the handler serves."""

    protocol_version = "HTTP/1.1"
    owner: Any = None

    def log_message(self, *args) -> None:
        pass


S = TypeVar("S", bound="ThreadedServer")


class ThreadedServer:
    """A stand-in either is one (a subclass: its handler's `owner` is the subclass instance)
    or holds some (`ThreadedServer(handler, owner)`)."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], owner: object = None):
        bound = type(handler.__name__, (handler,), {"owner": owner if owner is not None else self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), bound)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self: S) -> S:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self: S) -> S:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
