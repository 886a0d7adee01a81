"""The zero-copy relay of large bodies (auth_proxy/splice.py): the bytes are the upstream's,
a client that leaves midway or reads slowly costs nothing that stays, a body cut short
upstream ends the client's connection, and everything that is not a plain 200 with a length
goes the plain way."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from auth_proxy import splice

SIZE = 6 * (1 << 20) + 12345  # not a multiple of any buffer or pipe size


@pytest.fixture
def spliced(monkeypatch):
    """How many responses took the zero-copy way."""
    calls: list[str] = []
    real = splice.relay_body

    async def counted(request, resp, up):
        calls.append(request.path_qs)
        return await real(request, resp, up)

    monkeypatch.setattr(splice, "relay_body", counted)
    return calls


def big_file(stack, name: str = "big.bin") -> bytes:
    data = os.urandom(SIZE)
    out = Path(stack.tmp) / "output"
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_bytes(data)
    return data


def open_pipes() -> int:
    fds = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    return sum(link.startswith("pipe:") for link in fds)


async def raw_get(port: int, path: str, token: str, rcvbuf: int | None = None):
    """A client on a bare socket: (reader, writer, status line and headers)."""
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 16)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    return reader, writer, head


@pytest.mark.parametrize("mode", ["splice", "plain"])
async def test_bytes_are_the_upstreams_either_way(make_stack, http, spliced, mode):
    stack = await make_stack(relay=mode)
    data = big_file(stack)
    auth = {"Authorization": f"Bearer {stack.token}"}
    # twice on one connection: the connection a spliced body went over serves the next request
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as one:
        for _ in range(2):
            async with one.get(stack.url("/view?filename=big.bin&type=output"), headers=auth) as r:
                assert r.status == 200 and int(r.headers["Content-Length"]) == SIZE
                assert r.headers["Content-Security-Policy"] == "sandbox"  # the gate's headers still set
                assert hashlib.sha256(await r.read()).digest() == hashlib.sha256(data).digest()
        async with one.get(stack.url("/system_stats"), headers=auth) as r:
            assert r.status == 200
    assert len(spliced) == (2 if mode == "splice" else 0)
    async with http.get(stack.url("/view?filename=big.bin&type=output")) as r:
        assert r.status in (401, 303)  # no login, no body, whichever way bodies go


async def test_client_leaving_midway_leaves_nothing_open(make_stack, http, spliced):
    stack = await make_stack()
    data = big_file(stack)
    auth = {"Authorization": f"Bearer {stack.token}"}
    async with http.get(stack.url("/system_stats"), headers=auth) as r:
        assert r.status == 200
    pipes = open_pipes()
    for _ in range(3):
        reader, writer, head = await raw_get(
            stack.proxy.port, "/view?filename=big.bin&type=output", stack.token
        )
        assert head.startswith("HTTP/1.1 200")
        assert await reader.readexactly(1 << 20) == data[: 1 << 20]
        writer.transport.abort()  # a reset, as a closed browser tab sends
    for _ in range(100):
        if open_pipes() == pipes:
            break
        await asyncio.sleep(0.05)
    assert open_pipes() == pipes, "a splice pipe outlived its client"
    assert len(spliced) == 3
    async with http.get(stack.url("/view?filename=big.bin&type=output"), headers=auth) as r:
        assert await r.read() == data


async def test_slow_client_gets_every_byte_and_others_are_served_meanwhile(make_stack, http, spliced):
    stack = await make_stack()
    data = big_file(stack)
    auth = {"Authorization": f"Bearer {stack.token}"}
    reader, writer, head = await raw_get(
        stack.proxy.port, "/view?filename=big.bin&type=output", stack.token, rcvbuf=16384
    )
    assert head.startswith("HTTP/1.1 200") and f"Content-Length: {SIZE}" in head
    got = bytearray()
    answered = 0
    while len(got) < SIZE:
        got += await asyncio.wait_for(reader.read(65536), 10)
        await asyncio.sleep(0.002)
        if len(got) % 16 == 0 and answered < 5:  # now and then, someone else's request
            async with http.get(stack.url("/system_stats"), headers=auth) as r:
                answered += r.status == 200
    writer.close()
    assert bytes(got) == data
    assert len(spliced) == 1


@pytest.fixture
async def odd_upstream(aiohttp_server):
    """An upstream whose answers must not be spliced: chunked, compressed, 304, HEAD's."""
    body = os.urandom(3 << 20)
    r = web.RouteTableDef()

    @r.get("/chunked")
    async def chunked(request):
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(body), 1 << 18):
            await resp.write(body[i : i + (1 << 18)])
        await resp.write_eof()
        return resp

    @r.get("/compressed")
    async def compressed(_):
        return web.Response(
            body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/octet-stream"}
        )

    @r.get("/cached")
    async def cached(request):
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304, headers={"ETag": '"v1"'})
        return web.Response(body=body, headers={"ETag": '"v1"'})

    app = web.Application()
    app.add_routes(r)
    server = await aiohttp_server(app)
    return server, body


async def test_chunked_compressed_304_and_head_go_the_plain_way(make_stack, odd_upstream, spliced):
    server, body = odd_upstream
    stack = await make_stack(upstream=f"http://127.0.0.1:{server.port}")
    auth = {"Authorization": f"Bearer {stack.token}"}
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        async with s.get(stack.url("/chunked"), headers=auth) as r:
            assert r.headers.get("Transfer-Encoding") == "chunked" and await r.read() == body
        async with s.get(stack.url("/compressed"), headers=auth) as r:
            assert r.headers["Content-Encoding"] == "gzip" and await r.read() == body
        async with s.get(stack.url("/cached"), headers={**auth, "If-None-Match": '"v1"'}) as r:
            assert r.status == 304 and await r.read() == b""
        async with s.head(stack.url("/cached"), headers=auth) as r:
            assert r.status == 200 and int(r.headers["Content-Length"]) == len(body)
        async with s.get(stack.url("/cached"), headers=auth) as r:  # the control: a plain 200 with a length
            assert await r.read() == body
    assert spliced == ["/cached"]


async def test_body_cut_short_upstream_ends_the_clients_connection(make_stack, spliced):
    promised, sent = 4 << 20, 2 << 20

    async def cut(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {promised}\r\n\r\n".encode()
        )
        for _ in range(sent >> 16):
            writer.write(b"c" * 65536)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(cut, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        stack = await make_stack(upstream=f"http://127.0.0.1:{port}")
        reader, writer, head = await raw_get(stack.proxy.port, "/cut", stack.token)
        assert head.startswith("HTTP/1.1 200") and f"Content-Length: {promised}" in head
        got = await asyncio.wait_for(reader.read(), 20)  # to the end of the connection, not a hang
        writer.close()
        assert got == b"c" * sent
        assert spliced == ["/cut"]
    finally:
        server.close()
        await server.wait_closed()
