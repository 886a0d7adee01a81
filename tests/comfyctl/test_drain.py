"""`comfyctl drain` against a real HTTP server answering /queue the way ComfyUI does."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

from aiohttp import web

from comfyctl.drain import drain
from tests.support import REPO, free_port, python_env

CALLS = web.AppKey("calls", dict)


def queue_app(states: list[tuple[int, int]]) -> web.Application:
    """Answers /queue with each (running, pending) in turn, then repeats the last."""
    calls = {"n": 0}

    async def queue(_request: web.Request) -> web.Response:
        running, pending = states[min(calls["n"], len(states) - 1)]
        calls["n"] += 1
        item = lambda i: [i, f"prompt-{i}", {}, {}, []]  # noqa: E731 - ComfyUI's queue entry shape
        return web.json_response(
            {
                "queue_running": [item(i) for i in range(running)],
                "queue_pending": [item(i) for i in range(pending)],
            }
        )

    app = web.Application()
    app.router.add_get("/queue", queue)
    app[CALLS] = calls
    return app


async def test_waits_while_busy_then_returns_when_idle(aiohttp_server):
    server = await aiohttp_server(queue_app([(1, 2), (1, 0), (0, 0)]))
    why = await asyncio.to_thread(drain, str(server.make_url("")), 10.0, 0.05)
    assert why == "idle"
    assert server.app[CALLS]["n"] == 3


async def test_gives_up_after_the_timeout(aiohttp_server, caplog):
    server = await aiohttp_server(queue_app([(1, 0)]))
    started = time.monotonic()
    why = await asyncio.to_thread(drain, str(server.make_url("")), 0.5, 0.05)
    assert why == "timeout"
    assert time.monotonic() - started < 5
    assert "stopping anyway" in caplog.text


def test_unreachable_comfyui_means_nothing_to_drain():
    assert drain(f"http://127.0.0.1:{free_port()}", 5.0, 0.05) == "unreachable"


async def test_cli_exits_zero_and_says_what_it_waits_for(aiohttp_server):
    server = await aiohttp_server(queue_app([(1, 0), (1, 0), (0, 0)]))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "comfyctl",
        "drain",
        "--url",
        str(server.make_url("")),
        "--interval",
        "0.05",
        "--timeout",
        "10",
        cwd=REPO,
        env=python_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, out.decode()
    assert "waiting for ComfyUI's queue to empty: 1 running, 0 pending" in out.decode()
    assert "queue is empty" in out.decode()
