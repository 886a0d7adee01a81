"""A server that answers `comfyctl run` the way an attacker (or a broken server) would, for
both modes: ComfyUI's routes (/prompt, /ws, /history, /view, /upload/image) and the v2 API's
(/api/v2/jobs, its events and its assets). Each answer is ComfyUI's or the v2 API's shape
unless the test replaces it; every request's Authorization header is recorded, so a test can
tell which host got the credentials.

`create_app(**answers)`:
- `outputs`: the history entry's "outputs" (native) and `job_outputs`: the job's outputs
  (v2, a list of {"node_id", "name", "url"}; a url "/asset" is this server's own asset route);
- `prompt`, `history`, `job`: raw bytes to answer instead of the JSON (b"<html>..." etc.),
  or any JSON value; `entry`: the history entry itself, under the prompt's id;
- `ws`: the text messages sent after the prompt is queued (defaults to a clean finish);
  `events`: the SSE lines of the job's stream;
- `asset`: "endless" (bytes for ever), "trickle" (a byte every half second, for minutes) or
  bytes, for /view and /asset;
- `retry_after`: answer the first submission 429 with this Retry-After.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from tests.support.fake_comfyui import tiny_png

STATE = web.AppKey("hostile", dict)
JOB_ID = "job_1"


def _answer(value, status: int = 200) -> web.Response:
    if isinstance(value, bytes):
        return web.Response(body=value, content_type="text/html", status=status)
    return web.json_response(value, status=status)


def create_app(**answers) -> web.Application:
    state: dict = {"auth": [], "answers": answers, "submits": 0}
    app = web.Application()
    app[STATE] = state

    @web.middleware
    async def record(request, handler):
        state["auth"].append((request.path, request.headers.get("Authorization")))
        return await handler(request)

    app.middlewares.append(record)

    async def body_of(request) -> web.StreamResponse:
        kind = answers.get("asset", tiny_png())
        if isinstance(kind, bytes):
            return web.Response(body=kind, content_type="application/octet-stream")
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await resp.prepare(request)
        for _ in range(100_000 if kind == "endless" else 600):  # bounded, as every loop here
            await resp.write(b"x" * (1 << 16) if kind == "endless" else b"x")
            if kind == "trickle":
                await asyncio.sleep(0.5)
        await resp.write_eof()
        return resp

    # --- ComfyUI's routes -------------------------------------------------------------
    async def ws(request):
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        await sock.send_json({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}}})
        state["ws"] = sock
        async for _ in sock:  # held open until the client closes it
            pass
        return sock

    async def prompt(request):
        if "prompt" in answers:
            return _answer(answers["prompt"])
        pid = state["prompt_id"] = (await request.json()).get(
            "prompt_id"
        ) or "p-1"  # as ComfyUI: the client's
        for text in answers.get(
            "ws", [json.dumps({"type": "executing", "data": {"node": None, "prompt_id": pid}})]
        ):
            await state["ws"].send_str(text)
        return web.json_response({"prompt_id": pid, "number": 1, "node_errors": {}})

    async def history(request):
        if "history" in answers:
            return _answer(answers["history"])
        entry = answers.get(
            "entry", {"outputs": answers.get("outputs", {}), "status": {"status_str": "success"}}
        )
        return web.json_response({request.match_info["id"]: entry})

    # --- the v2 API's ---------------------------------------------------------------------
    def job(status: str) -> dict:
        return {
            "id": JOB_ID,
            "status": status,
            "urls": {"self": f"/api/v2/jobs/{JOB_ID}", "events": f"/api/v2/jobs/{JOB_ID}/events"},
            "outputs": answers.get("job_outputs", []) if status == "succeeded" else [],
        }

    async def submit(request):
        state["submits"] += 1
        if "retry_after" in answers and state["submits"] == 1:
            return web.json_response(
                {"error": {"code": "queue_full", "message": "full"}},
                status=429,
                headers={"Retry-After": answers["retry_after"]},
            )
        if "job" in answers:
            return _answer(answers["job"], status=201)
        return web.json_response(job("queued"), status=201)

    async def events(request):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        lines = answers.get("events", ["event: status", 'data: {"status": "succeeded"}', ""])
        await resp.write("".join(line + "\n" for line in lines).encode())
        await resp.write_eof()
        return resp

    async def job_self(request):
        return web.json_response(job("succeeded"))

    app.router.add_get("/ws", ws)
    app.router.add_post("/prompt", prompt)
    app.router.add_get("/history/{id}", history)
    app.router.add_get("/view", body_of)
    app.router.add_post("/api/v2/jobs", submit)
    app.router.add_get(f"/api/v2/jobs/{JOB_ID}", job_self)
    app.router.add_get(f"/api/v2/jobs/{JOB_ID}/events", events)
    app.router.add_get("/asset", body_of)
    return app
