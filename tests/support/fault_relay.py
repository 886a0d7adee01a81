"""An HTTP relay that injects faults into object downloads, between a client and a store.

Faults (queued, each used once, applied to object GETs in arrival order):
  "503"      answer 503 with an S3/OSS-style SlowDown error, without asking upstream;
  "reset"    send the headers and half the body, then reset the TCP connection (RST);
  "truncate" send the headers and half the body, then close the connection cleanly;
  "corrupt"  send the whole body with one byte flipped;
  "stall"    send the headers and half the body, then go silent for `stall_seconds` (the
             client's read timeout must fire) and close;
  a callable called with the request's path before the request goes upstream (to change
             the object on the store at that moment), then relayed as it is.
It also counts the body bytes of object GETs it relays and can throttle them, which is what
the resume tests measure ("how much was fetched again").
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from urllib.parse import urlsplit

from .threaded_server import QuietHandler, ThreadedServer

HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}


class FaultRelay(ThreadedServer):
    def __init__(self, upstream: str):
        u = urlsplit(upstream)
        self.upstream_host, self.upstream_port = u.hostname, u.port
        self.faults: deque[str | Callable[[str], None]] = deque()
        self.lock = threading.Lock()
        self.body_bytes = 0  # object-GET body bytes sent to clients
        self.object_gets = 0
        self.heads = 0  # HEAD requests relayed
        self.faults_done: list[str | Callable[[str], None]] = []
        self.rate: float | None = None  # bytes per second for object GET bodies, None = unlimited
        self.stall_seconds = 3.0
        # cleared: object-GET bodies stop between chunks (pause()), so a test can let the
        # client drain what is already in the sockets before it kills the client
        self.flowing = threading.Event()
        self.flowing.set()
        self._sending = 0  # object-GET writes under way (none start while paused)
        self._conns: set[socket.socket] = set()  # connections that carried object-GET bodies
        super().__init__(_Handler)

    def inject(self, *faults: str | Callable[[str], None]) -> None:
        with self.lock:
            self.faults.extend(faults)

    def pause(self) -> None:
        with self.lock:
            self.flowing.clear()

    def drained(self) -> bool:
        """Paused, no write under way, and every body byte sent has been read by the client:
        nothing left in the relay's send queues nor in the client's receive queues."""
        with self.lock:
            if self.flowing.is_set() or self._sending:
                return False
            conns = list(self._conns)
        queues = _tcp_queues()
        for conn in conns:
            try:
                here, peer = conn.getsockname()[1], conn.getpeername()[1]
            except OSError:
                continue  # closed: nothing of it is in flight
            if queues.get((here, peer), (0, 0))[0] or queues.get((peer, here), (0, 0))[1]:
                return False
        return True

    def resume(self) -> None:
        self.flowing.set()

    def reset_counters(self) -> None:
        with self.lock:
            self.body_bytes = 0
            self.object_gets = 0
            self.heads = 0

    def _next_fault(self) -> str | Callable[[str], None] | None:
        with self.lock:
            self.object_gets += 1
            if self.faults:
                f = self.faults.popleft()
                self.faults_done.append(f)
                return f
            return None

    def _begin_write(self, conn: socket.socket) -> None:
        # Waits while paused; checked again under the lock so that no write starts after
        # pause() has returned.
        while True:
            self.flowing.wait()
            with self.lock:
                if self.flowing.is_set():
                    self._sending += 1
                    self._conns.add(conn)
                    return

    def _end_write(self) -> None:
        with self.lock:
            self._sending -= 1

    def _count(self, n: int) -> None:
        with self.lock:
            self.body_bytes += n


def _tcp_queues() -> dict[tuple[int, int], tuple[int, int]]:
    """(local port, remote port) -> (bytes not yet taken by the peer, bytes not yet read by the
    application) for every IPv4 TCP socket, from /proc/net/tcp (Linux)."""
    out = {}
    with open("/proc/net/tcp", encoding="ascii") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote, (tx, rx) = fields[1], fields[2], fields[4].split(":")
            out[(int(local.split(":")[1], 16), int(remote.split(":")[1], 16))] = (int(tx, 16), int(rx, 16))
    return out


def _is_object_get(method: str, path: str) -> bool:
    parts = urlsplit(path)
    return (
        method == "GET"
        and "/" in parts.path.lstrip("/")
        and not parts.path.endswith("/")
        and "list-type" not in parts.query
    )


class _Handler(QuietHandler):
    owner: FaultRelay

    def do_HEAD(self) -> None:
        with self.owner.lock:
            self.owner.heads += 1
        self._relay()

    def do_GET(self) -> None:
        self._relay()

    def _relay(self) -> None:
        relay = self.owner
        fault = relay._next_fault() if _is_object_get(self.command, self.path) else None
        if callable(fault):
            fault(self.path)
            fault = None
        if fault == "503":
            body = (
                b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
                b"<Message>Please reduce your request rate.</Message>"
                b"<RequestId>FAULT</RequestId></Error>"
            )
            self.send_response(503)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("x-oss-request-id", "FAULT")
            self.end_headers()
            self.wfile.write(body)
            return
        conn = http.client.HTTPConnection(relay.upstream_host, relay.upstream_port, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            conn.request(self.command, self.path, headers=headers)
            resp = conn.getresponse()
            body = resp.read() if self.command != "HEAD" else b""
        finally:
            conn.close()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in HOP and k.lower() != "content-length":
                self.send_header(k, v)
        length = int(resp.getheader("Content-Length", len(body)))
        self.send_header("Content-Length", str(length if self.command == "HEAD" else len(body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        counted = _is_object_get(self.command, self.path)
        if fault == "corrupt" and body:
            i = len(body) // 2
            body = body[:i] + bytes([body[i] ^ 0xFF]) + body[i + 1 :]
        if fault in ("reset", "truncate", "stall") and len(body) > 1:
            half = body[: len(body) // 2]
            self._send(half, counted)
            self.wfile.flush()
            if fault == "stall":
                time.sleep(relay.stall_seconds)
            if fault == "reset":
                # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        self._send(body, counted)

    def _send(self, data: bytes, counted: bool) -> None:
        relay = self.owner
        step = 16 * 1024
        for i in range(0, len(data), step):
            chunk = data[i : i + step]
            if counted and relay.rate:
                time.sleep(len(chunk) / relay.rate)
            if counted:
                relay._begin_write(self.connection)
            try:
                self.wfile.write(chunk)
                if counted:
                    relay._count(len(chunk))
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client went away (a killed process)
                return
            finally:
                if counted:
                    relay._end_write()

    def finish(self) -> None:
        super().finish()
        with self.owner.lock:
            self.owner._conns.discard(self.connection)
