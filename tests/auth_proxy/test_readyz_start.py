"""/readyz during and after a start: the start's timed phases (comfy_stack.startup) and what
the start waits for, in a public answer that names no pack."""

from __future__ import annotations

import json

import aiohttp

from comfy_stack import startup


async def test_readyz_shows_the_phases_and_what_the_start_waits_for(make_stack, unused_tcp_port, tmp_path):
    run = tmp_path / "run"
    serve = startup.Recorder(run / startup.SERVE_FILE)
    with serve.phase("settings"):
        pass
    serve.finish()
    watcher = startup.ComfyUIWatcher(run / startup.COMFYUI_FILE)
    for line in (
        "Python version: 3.12",
        "Import times for custom nodes:",
        "   0.4 seconds: /x/ComfyUI-KJNodes",
    ):
        watcher.feed(line)
    down = await make_stack(upstream=f"http://127.0.0.1:{unused_tcp_port}", run_dir=run)
    async with aiohttp.ClientSession() as s:
        async with s.get(down.url("/readyz")) as r:
            body = await r.json()
            assert r.status == 503
            assert body["waiting_for"].startswith("ComfyUI: starting the server (")
            assert [p["name"] for p in body["start"]] == ["settings"]
            assert body["comfyui_start"][0]["name"] == "importing torch and ComfyUI"
            assert "running_for" in body["comfyui_start"][2] and body["comfyui_start"][1]["seconds"] >= 0
            assert "KJNodes" not in json.dumps(body), "pack names stay out of a public answer"
        up = await make_stack(run_dir=run)
        async with s.get(up.url("/readyz")) as r:
            body = await r.json()
            assert r.status == 200 and body["status"] == "ready" and body["start"][0]["name"] == "settings"


async def test_readyz_follows_comfyuis_first_answer_at_once_but_keeps_answers_a_second(
    make_stack, unused_tcp_port
):
    """A refused connection (ComfyUI not listening yet) is not kept: the /readyz right after
    ComfyUI starts listening is ready. What ComfyUI answered is kept a second, however many ask."""
    from aiohttp import web

    hits = {"n": 0}

    async def stats(_request):
        hits["n"] += 1
        return web.json_response({})

    stack = await make_stack(upstream=f"http://127.0.0.1:{unused_tcp_port}")
    async with aiohttp.ClientSession() as s:
        for _ in range(3):
            async with s.get(stack.url("/readyz")) as r:
                assert r.status == 503
        app = web.Application()
        app.router.add_get("/system_stats", stats)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
        try:
            for _ in range(5):
                async with s.get(stack.url("/readyz")) as r:
                    assert r.status == 200
            assert hits["n"] == 1
        finally:
            await runner.cleanup()
