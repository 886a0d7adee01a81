"""`comfyctl run` against the stand-in replaying a real ComfyUI run of the smoke workflow
(tests/data/smoke_ws_sequence.json: every WebSocket message and the /history entry,
recorded from ComfyUI with `--cpu`), bare and through the real proxy with a token; and a
real /prompt 400 answer (tests/data/prompt_400_node_errors.json)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp import web

from comfyctl import run as runmod
from tests.support import REPO, fake_comfyui
from tests.support.comfyctl import run_args

DATA = REPO / "tests/data"
RECORDED = json.loads((DATA / "smoke_ws_sequence.json").read_text(encoding="utf-8"))


def _swap_ids(obj, old: str, new: str):
    """The recorded messages carry the recorded prompt id; a replay answers with its own."""
    return json.loads(json.dumps(obj).replace(old, new))


async def replay(state: dict, prompt_id: str, prompt: dict, client_id: str | None) -> None:
    old = RECORDED["prompt_response"]["prompt_id"]
    entry = _swap_ids(next(iter(RECORDED["history"].values())), old, prompt_id)
    for node_out in entry["outputs"].values():
        for item in node_out.get("images", []):
            folder = state["output"] / item["subfolder"]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / item["filename"]).write_bytes(fake_comfyui.tiny_png(32, 32, 0))
    for msg in RECORDED["ws_messages"]:
        if msg["type"] == "status":
            continue  # queue counters of the recording; the stand-in sends its own
        await fake_comfyui.broadcast(state, _swap_ids(msg, old, prompt_id), client_id)
    state["history"][prompt_id] = entry
    state["queue"].remove(prompt_id)
    await fake_comfyui.broadcast(state, fake_comfyui.status_msg(state))


def args(tmp_path: Path, server: str, **kw):
    return run_args(tmp_path, server, flags=("--timeout", "30"), **kw)


@pytest.fixture
async def upstream(tmp_path, aiohttp_server):
    return await aiohttp_server(fake_comfyui.create_app(tmp_path / "server" / "output", executor=replay))


def _recorded_outputs() -> list[str]:
    entry = next(iter(RECORDED["history"].values()))
    return [f"{i['subfolder']}/{i['filename']}" for o in entry["outputs"].values() for i in o["images"]]


def test_recording_is_a_complete_real_run():
    types = [m["type"] for m in RECORDED["ws_messages"]]
    assert types.index("execution_start") < types.index("executed") < types.index("execution_success")
    assert types[-1] == "executing" and RECORDED["ws_messages"][-1]["data"]["node"] is None
    assert _recorded_outputs()


async def test_replayed_run_downloads_the_recorded_outputs(tmp_path, upstream):
    result = await runmod.run(args(tmp_path, f"http://127.0.0.1:{upstream.port}"))
    got = sorted(Path(p).relative_to(tmp_path / "out").as_posix() for p in result["outputs"])
    assert got == sorted(_recorded_outputs())
    assert all(Path(p).read_bytes().startswith(b"\x89PNG") for p in result["outputs"])


async def test_replayed_run_through_the_proxy_with_a_token(tmp_path, upstream, proxy_for):
    proxy = await proxy_for(f"http://127.0.0.1:{upstream.port}")
    result = await runmod.run(args(tmp_path, proxy.origin, token=proxy.token))
    assert len(result["outputs"]) == len(_recorded_outputs())


async def test_real_node_errors_answer_is_reported(tmp_path, aiohttp_server):
    body = json.loads((DATA / "prompt_400_node_errors.json").read_text(encoding="utf-8"))

    async def prompt(_):
        return web.json_response(body, status=400)

    async def ws(request):
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        await sock.send_json({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "x"}})
        async for _ in sock:  # held open until the client closes it
            pass
        return sock

    app = web.Application()
    app.router.add_get("/ws", ws)
    app.router.add_post("/prompt", prompt)
    app.router.add_post("/api/prompt", prompt)
    server = await aiohttp_server(app)
    with pytest.raises(runmod.Rejected) as exc:
        await runmod.run(args(tmp_path, f"http://127.0.0.1:{server.port}"))
    assert "Invalid image file: missing.png" in str(exc.value)
