"""Running the proxy (or ComfyUI behind it) out of file descriptors without credentials:
slow-header connections against a lowered RLIMIT_NOFILE, and /readyz in bulk. Attackers
and probes use distinct loopback addresses; every attack is bounded in count and time."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import aiohttp

from tests.support.proxy import from_address


async def slow_client(host: str, port: int, source: str, until: float, seen: Counter, again: bool) -> None:
    """Open a connection and send a request's headers a line a second, never finishing;
    with `again`, reconnect whenever the proxy closes it, until `until`."""
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
        except OSError:
            seen["connect failed"] += 1
            await asyncio.sleep(0.2)
            continue
        seen["opened"] += 1
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            while time.monotonic() < until:
                await writer.drain()
                try:
                    first = await asyncio.wait_for(reader.read(64), 1.0)
                except asyncio.TimeoutError:
                    writer.write(b"X-Slow: 1\r\n")  # one more header line, never the end
                    continue
                seen["refused 429" if first.startswith(b"HTTP/1.1 429") else "closed by the proxy"] += 1
                break
        except (ConnectionError, OSError):
            seen["closed by the proxy"] += 1
        finally:
            writer.close()
        if not again:
            await asyncio.sleep(max(0.0, until - time.monotonic()))
            break
        await asyncio.sleep(0)


async def probe(base: str, until: float, source: str = "127.0.0.200") -> list:
    """/healthz once a second from another address: (answered, seconds)."""
    results = []
    async with from_address(source) as s:
        while time.monotonic() < until:
            started = time.monotonic()
            try:
                async with s.get(base + "/healthz", timeout=aiohttp.ClientTimeout(total=6)) as r:
                    results.append((r.status == 200, round(time.monotonic() - started, 1)))
            except (aiohttp.ClientError, asyncio.TimeoutError):
                results.append((False, round(time.monotonic() - started, 1)))
            await asyncio.sleep(1)
    return results


def open_files_limit(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open files limit")


async def test_slow_connections_from_one_client_leave_room_for_others(spawn_proxy):
    """140 slow-header connections from one address against 128 descriptors (soft and hard,
    so raising the limit cannot help): the per-client cap refuses those past 100, and
    /healthz from elsewhere is answered throughout."""
    proxy = spawn_proxy(nofile=(128, 128))
    port = int(proxy.base.rsplit(":", 1)[1])
    seen: Counter = Counter()
    until = time.monotonic() + 8
    attack = [
        asyncio.ensure_future(slow_client("127.0.0.1", port, "127.0.0.1", until, seen, again=False))
        for _ in range(140)
    ]
    await asyncio.sleep(1.5)
    probes = await probe(proxy.base, until)
    await asyncio.gather(*attack)
    print(f"140 slow connections from one address: {dict(seen)}; /healthz probes: {probes}")
    assert probes and all(ok for ok, _s in probes), probes
    assert seen["refused 429"] >= 30


async def test_slow_connections_from_many_clients_meet_the_header_deadline(spawn_proxy):
    """140 slow-header connections from 7 addresses (each under the cap), reconnecting as
    soon as they are closed: the header deadline (2 s here) keeps closing them, so
    /healthz from elsewhere still gets a descriptor."""
    proxy = spawn_proxy(nofile=(128, 128), AUTH_PROXY_HEADER_TIMEOUT="2")
    port = int(proxy.base.rsplit(":", 1)[1])
    seen: Counter = Counter()
    until = time.monotonic() + 12
    attack = [
        asyncio.ensure_future(slow_client("127.0.0.1", port, f"127.0.3.{i % 7 + 1}", until, seen, again=True))
        for i in range(140)
    ]
    await asyncio.sleep(3)
    probes = await probe(proxy.base, until)
    await asyncio.gather(*attack)
    print(f"140 slow connections from 7 addresses, reconnecting: {dict(seen)}; /healthz probes: {probes}")
    assert probes and sum(ok for ok, _s in probes) >= len(probes) - 1, probes
    assert seen["closed by the proxy"] >= 140


async def test_the_open_files_limit_is_raised_at_start(spawn_proxy):
    proxy = spawn_proxy(nofile=(128, 4096))
    assert open_files_limit(proxy.proc.pid) == (4096, 4096)


async def test_readyz_in_bulk_costs_comfyui_one_check(stack):
    """400 unauthenticated /readyz at once: answered from one check (cached a second)."""
    before = stack.up_state["hits"]["/system_stats"]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:

        async def one():
            async with s.get(stack.url("/readyz")) as r:
                return r.status

        statuses = Counter(await asyncio.gather(*[one() for _ in range(400)]))
    checks = stack.up_state["hits"]["/system_stats"] - before
    print(f"400 concurrent /readyz: {dict(statuses)}; checks that reached ComfyUI: {checks}")
    assert statuses == {200: 400} and checks <= 5
    async with aiohttp.ClientSession() as s:
        async with s.get(stack.url("/readyz")) as r:
            assert "127.0.0.1" not in await r.text()


async def test_the_upstream_connections_are_bounded(make_stack):
    stack = await make_stack(upstream_connections=8)
    auth = {"Authorization": f"Bearer {stack.token}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:

        async def one():
            async with s.get(stack.url("/_test/slow?s=0.3"), headers=auth) as r:
                return r.status

        statuses = Counter(await asyncio.gather(*[one() for _ in range(60)]))
    print(
        f"60 concurrent slow requests, 8 upstream connections: {dict(statuses)}; "
        f"most at once upstream: {stack.up_state['most_in_flight']}"
    )
    assert statuses == {200: 60} and stack.up_state["most_in_flight"] <= 8
