"""`comfyctl run` against the stand-in replaying real ComfyUI runs (every WebSocket message
and the /history entry, recorded from ComfyUI with `--cpu`): the smoke workflow
(tests/data/smoke_ws_sequence.json), bare and through the real proxy with a token; an
audio file uploaded and rewired into LoadAudio, whose SaveAudio output comes back
(tests/data/audio_ws_sequence.json, with the real upload answer and output file); and a
real /prompt 400 answer (tests/data/prompt_400_node_errors.json)."""

from __future__ import annotations

import base64
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


def make_replay(recorded: dict):
    """An executor for the stand-in that answers any prompt with `recorded`'s run; it keeps
    the prompt it was given (state["prompts"]) so a test can see what the client sent."""

    async def replay(state: dict, prompt_id: str, prompt: dict, client_id: str | None) -> None:
        state.setdefault("prompts", []).append(prompt)
        old = recorded["prompt_response"]["prompt_id"]
        entry = _swap_ids(next(iter(recorded["history"].values())), old, prompt_id)
        files = {k: base64.b64decode(v) for k, v in recorded.get("output_files", {}).items()}
        for node_out in entry["outputs"].values():
            for item in node_out.get("images", []) + node_out.get("audio", []):
                folder = state["output"] / item["subfolder"]
                folder.mkdir(parents=True, exist_ok=True)
                rel = f"{item['subfolder']}/{item['filename']}".lstrip("/")
                (folder / item["filename"]).write_bytes(files.get(rel) or fake_comfyui.tiny_png(32, 32, 0))
        for msg in recorded["ws_messages"]:
            if msg["type"] == "status":
                continue  # queue counters of the recording; the stand-in sends its own
            await fake_comfyui.broadcast(state, _swap_ids(msg, old, prompt_id), client_id)
        state["history"][prompt_id] = entry
        state["queue"].remove(prompt_id)
        await fake_comfyui.broadcast(state, fake_comfyui.status_msg(state))

    return replay


replay = make_replay(RECORDED)


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
        await sock.send_json(
            {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "x"}}
        )
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


AUDIO = json.loads((DATA / "audio_ws_sequence.json").read_text(encoding="utf-8"))


async def test_audio_input_is_uploaded_and_rewired_like_an_image(tmp_path, aiohttp_server):
    """`--input audio=speech.wav` goes through /upload/image (as ComfyUI's frontend uploads
    audio), and the name the server answers is what LoadAudio gets: here `speech (1).wav`,
    since the server already holds a different speech.wav, as in the recorded run."""
    app = fake_comfyui.create_app(
        tmp_path / "server" / "output", executor=make_replay(AUDIO), known_classes={"LoadAudio", "SaveAudio"}
    )
    state = app[fake_comfyui.STATE]
    state["input"].mkdir(parents=True)
    (state["input"] / "speech.wav").write_bytes(fake_comfyui.tiny_wav(0.25))
    upstream = await aiohttp_server(app)
    speech = tmp_path / "speech.wav"
    speech.write_bytes(fake_comfyui.tiny_wav(0.5))
    ns = args(
        tmp_path,
        f"http://127.0.0.1:{upstream.port}",
        workflow=DATA / "audio_roundtrip.json",
        input=[f"audio={speech}"],
    )
    result = await runmod.run(ns)
    assert AUDIO["upload_response"]["name"] == "speech (1).wav"  # what the real server answered
    assert state["prompts"][0]["1"]["inputs"]["audio"] == "speech (1).wav"
    assert (state["input"] / "speech (1).wav").read_bytes() == speech.read_bytes()
    (out,) = result["outputs"]
    assert Path(out).relative_to(tmp_path / "out").as_posix() == "audio/roundtrip_00001_.flac"
    assert Path(out).read_bytes() == base64.b64decode(AUDIO["output_files"]["audio/roundtrip_00001_.flac"])
    assert Path(out).read_bytes().startswith(b"fLaC")
    # the same file again: the server keeps one copy under its name, as ComfyUI does
    again = await runmod.run(
        args(
            tmp_path,
            f"http://127.0.0.1:{upstream.port}",
            workflow=DATA / "audio_roundtrip.json",
            input=[f"audio={speech}"],
        )
    )
    assert state["prompts"][1]["1"]["inputs"]["audio"] == "speech (1).wav" and again["outputs"]


async def test_s2v_takes_an_audio_and_an_image_input(tmp_path, aiohttp_server):
    """The bundled speech-to-video workflow: both uploads land where its parameter map says."""
    wf = json.loads((REPO / "workflows/api/wan22-s2v-14b.json").read_text(encoding="utf-8"))
    classes = {n["class_type"] for n in wf["prompt"].values()}
    app = fake_comfyui.create_app(tmp_path / "server" / "output", known_classes=classes)
    upstream = await aiohttp_server(app)
    speech, face = tmp_path / "speech.wav", tmp_path / "face.png"
    speech.write_bytes(fake_comfyui.tiny_wav())
    face.write_bytes(fake_comfyui.tiny_png())
    ns = args(
        tmp_path,
        f"http://127.0.0.1:{upstream.port}",
        workflow=REPO / "workflows/api/wan22-s2v-14b.json",
        input=[f"audio={speech}", f"image={face}"],
        param=["frames=73"],
    )
    result = await runmod.run(ns)
    state = app[fake_comfyui.STATE]
    sent = state["history"][result["prompt_id"]]["prompt"][2]
    assert sent["58"]["inputs"]["audio"] == "speech.wav" and sent["52"]["inputs"]["image"] == "face.png"
    assert sent["93"]["inputs"]["length"] == 73
    assert (state["input"] / "speech.wav").read_bytes() == speech.read_bytes()
