"""Relaying a large response body from ComfyUI's socket to the client's without copying it
through Python: `os.splice` moves it through a pipe inside the kernel.

The plain relay reads each chunk into a bytes object and writes it out again, so a 1 GiB
/view download costs the event loop thousands of reads, writes and wake-ups and the CPU two
copies per byte. For a body the proxy need not look at (its headers have passed every check
already), the kernel can move the pages itself. No library offers this for aiohttp, hence
the code here.

Only a body with a known length, sent as it is, takes this way: a GET answered 200 with
Content-Length and neither Content-Encoding nor Transfer-Encoding, over a plain TCP socket
on both sides (never TLS: the bytes on the wire are not the body there). Everything else,
HEAD, 304, chunked, compressed, small bodies, goes the plain way, as does every response
when AUTH_PROXY_RELAY=plain.

How the body's socket is taken from aiohttp: the headers have been parsed and part of the
body may already sit in the response's buffer. That part is taken with `read_nowait()` and
the upstream transport's reading is paused in the same step (no await between them, so no
byte can arrive in between); from there on nothing in aiohttp reads that socket, and the
rest of the body is spliced from it. The upstream connection is closed afterwards, never
reused: aiohttp's parser has not seen the end of that response. On the client's side the
headers and that first part go through aiohttp's writer, and splicing starts once its
buffer has drained, so the bytes stay in order; the connection stays open for the next
request when the whole body went through, and is closed when it did not.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket

import aiohttp
from aiohttp import web

# Bodies smaller than this gain nothing from a pipe and two extra descriptors.
MIN_BODY = 1 << 20
PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
AVAILABLE = hasattr(os, "splice")


def plain_socket(transport: asyncio.BaseTransport | None) -> socket.socket | None:
    """The transport's TCP socket when the bytes on it are the HTTP stream itself."""
    if transport is None or transport.is_closing() or transport.get_extra_info("sslcontext") is not None:
        return None
    sock = transport.get_extra_info("socket")
    if (
        sock is None
        or sock.family not in (socket.AF_INET, socket.AF_INET6)
        or sock.type != socket.SOCK_STREAM
    ):
        return None
    return sock


def eligible(request: web.Request, up: aiohttp.ClientResponse) -> bool:
    if not AVAILABLE or request.method != "GET" or up.status != 200:
        return False
    h = up.headers
    if "Content-Encoding" in h or "Transfer-Encoding" in h or not h.get("Content-Length", "").isdigit():
        return False
    if int(h["Content-Length"]) < MIN_BODY or up.connection is None:
        return False
    return plain_socket(request.transport) is not None and plain_socket(up.connection.transport) is not None


class Splicer:
    """Moves `count` bytes from one socket to another through a pipe; both sockets are
    watched through duplicates of their descriptors, since asyncio allows one watcher per
    descriptor and the transports own theirs."""

    def __init__(self, src: socket.socket, dst: socket.socket):
        self.loop = asyncio.get_running_loop()
        self.src, self.dst = os.dup(src.fileno()), os.dup(dst.fileno())
        self.r, self.w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            self.size = fcntl.fcntl(self.w, F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:  # above /proc/sys/fs/pipe-max-size: the default 64 KiB pipe still works
            self.size = 65536
        self.moved = 0

    def close(self) -> None:
        for fd in (self.src, self.dst, self.r, self.w):
            os.close(fd)

    async def wait(self, read: bool, write: bool) -> None:
        ready = self.loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        if read:
            self.loop.add_reader(self.src, wake)
        if write:
            self.loop.add_writer(self.dst, wake)
        try:
            await ready
        finally:
            if read:
                self.loop.remove_reader(self.src)
            if write:
                self.loop.remove_writer(self.dst)

    async def run(self, count: int) -> None:
        """Raises ConnectionResetError when the client goes away, aiohttp.ClientPayloadError
        when ComfyUI closes before the body's end; `moved` says how far it got."""
        left, in_pipe = count, 0
        while left or in_pipe:
            progressed = False
            if left and in_pipe < self.size:
                try:
                    n = os.splice(self.src, self.w, min(left, self.size - in_pipe), flags=FLAGS)
                except BlockingIOError:
                    n = -1
                except OSError as exc:
                    raise aiohttp.ClientPayloadError(f"reading ComfyUI's response failed: {exc}") from exc
                if n == 0:
                    raise aiohttp.ClientPayloadError(
                        f"ComfyUI closed the connection after {count - left} of {count} body bytes"
                    )
                if n > 0:
                    left, in_pipe, progressed = left - n, in_pipe + n, True
            if in_pipe:
                try:
                    n = os.splice(self.r, self.dst, in_pipe, flags=FLAGS)
                except BlockingIOError:
                    n = 0
                except OSError as exc:  # EPIPE, ECONNRESET: the client went away
                    raise ConnectionResetError(f"client went away: {exc}") from exc
                if n > 0:
                    in_pipe, self.moved, progressed = in_pipe - n, self.moved + n, True
            if not progressed:
                await self.wait(read=bool(left) and in_pipe < self.size, write=bool(in_pipe))


async def drained(transport: asyncio.WriteTransport, dst: Splicer) -> None:
    """Until aiohttp's writer has sent everything it holds (the headers, the first part)."""
    while transport.get_write_buffer_size():
        if transport.is_closing():
            raise ConnectionResetError("client went away")
        await dst.wait(read=False, write=True)


async def relay_body(request: web.Request, resp: web.StreamResponse, up: aiohttp.ClientResponse) -> None:
    """Prepares `resp` and sends it the body of `up`; called right after `eligible()`, with no
    await between them, so the upstream socket is still open. See the module's docstring."""
    assert up.connection is not None and up.connection.transport is not None
    length = int(up.headers["Content-Length"])
    upstream = up.connection.transport
    first = up.content.read_nowait()
    upstream.pause_reading()  # in the same step as the read above: see the module's docstring
    src = plain_socket(upstream)
    assert src is not None
    try:
        await resp.prepare(request)
        if first:
            await resp.write(first)
        client = request.transport
        dst = plain_socket(client)
        if client is None or dst is None:
            raise ConnectionResetError("client went away")
        splicer = Splicer(src, dst)
        try:
            await drained(client, splicer)
            await splicer.run(length - len(first))
        except BaseException:
            # Headers promised more than the client got: it must see the connection end.
            client.close()
            raise
        finally:
            splicer.close()
    finally:
        up.close()
