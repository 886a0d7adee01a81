"""Gateways as stateless replicas: the account, tokens and browser sessions are shared
through PostgreSQL, and a browser session is pinned to one worker, the same from every
replica, so that the native UI (its HTTP routes and its WebSocket) keeps working."""

from __future__ import annotations

import asyncio
import json
import signal

import aiohttp

from tests.support.proxy import PASSWORD


async def login(session: aiohttp.ClientSession, base: str) -> None:
    async with session.post(base + "/login", json={"username": "admin", "password": PASSWORD}) as r:
        assert r.status == 200, await r.text()


async def test_a_session_is_pinned_to_one_worker_from_every_replica(cluster):
    g0, g1 = cluster.add_gateway(), cluster.add_gateway()
    cluster.add_worker_proxy(), cluster.add_worker_proxy()
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        await login(browser, cluster.url(g0))
        seen = set()
        for gateway in (g0, g1, g0, g1):  # the same cookie through both replicas
            async with browser.get(
                cluster.url(gateway, "/queue"), headers={"Accept": "application/json"}
            ) as r:
                assert r.status == 200 and "queue_running" in await r.json()
                seen.add(r.headers["X-Comfy-Worker"])
        assert len(seen) == 1
        [worker] = seen
        # The WebSocket through a gateway reaches that worker's ComfyUI (its first message).
        origin = cluster.url(g1)
        async with browser.ws_connect(origin + "/ws?clientId=ui-1", headers={"Origin": origin}) as ws:
            first = json.loads((await ws.receive(timeout=10)).data)
            assert first["type"] == "status" and first["data"]["sid"] == "ui-1"
        # A logout on one replica ends the session on the other.
        cookie = {c.key: c.value for c in jar}["comfy_session"]
        async with browser.post(cluster.url(g1, "/logout"), headers={"Origin": cluster.url(g1)}) as r:
            assert r.status in (200, 303)
    async with aiohttp.ClientSession() as other:
        async with other.get(
            cluster.url(g0, "/queue"),
            headers={"Cookie": f"comfy_session={cookie}", "Accept": "application/json"},
        ) as r:
            assert r.status == 401
    async with aiohttp.ClientSession() as api:
        # a token made on one replica's command line is good on every replica
        for gateway in (g0, g1):
            async with api.get(
                cluster.url(gateway, "/api/v2/jobs"), headers={"Authorization": f"Bearer {cluster.token}"}
            ) as r:
                assert r.status == 200
    assert worker in {w.name for w in cluster.workers}


async def test_a_dead_workers_sessions_see_its_name_then_move(cluster):
    gateway = cluster.add_gateway()
    first = cluster.add_worker_proxy()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        await login(browser, cluster.url(gateway))
        async with browser.get(cluster.url(gateway, "/queue")) as r:
            assert r.status == 200 and r.headers["X-Comfy-Worker"] == first.name
        first.proc.kill9()  # its row stays until it is no longer heard of
        async with browser.get(cluster.url(gateway, "/"), headers={"Accept": "text/html"}) as r:
            assert r.status == 503 and first.name in await r.text()
        cluster.start(first)
        second = cluster.add_worker_proxy()
        first.proc.proc.send_signal(signal.SIGTERM)  # a clean stop: its row goes, its sessions move
        first.proc.proc.wait(timeout=60)

        async def on_worker() -> str | None:
            async with browser.get(cluster.url(gateway, "/queue")) as r:
                return r.headers.get("X-Comfy-Worker") if r.status == 200 else None

        for _ in range(100):  # the gateway reads the live workers every couple of seconds
            if await on_worker() == second.name:
                break
            await asyncio.sleep(0.1)
        assert await on_worker() == second.name
