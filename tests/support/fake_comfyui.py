"""A stand-in for ComfyUI that speaks its HTTP routes and WebSocket protocol.

Used where a real ComfyUI cannot run in the default suite: as the upstream of the proxy
tests, and as the program supervisord runs in the runtime tests
(`python -m tests.support.fake_comfyui --listen 127.0.0.1 --port N --output-directory D`;
other ComfyUI flags are accepted and ignored). Routes and message shapes follow ComfyUI's
server.py: every core route also answers under /api/, the WebSocket at /ws?clientId=
sends `status` on connect, and a queued prompt produces execution_start,
execution_cached, executing, progress, executed, execution_success and a final
executing with node null, each sent to the socket whose clientId is the prompt's
client_id (broadcast when it has none). Queue items and history entries keep the prompt's
extra_data (with its client_id), as ComfyUI's do. With `multi_user` (--multi-user), the
user is the `comfy-user` header's, known only if it is in users.json (read at start;
`POST /users` adds one), else a 500. The userdata file routes (`/userdata/{file}`, its move and
delete) are aiohttp routes as in ComfyUI, so `workflows%2Fx.json` is one file name and
`workflows/x.json` matches nothing. Routes under /_test/ exist only here, for relay tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import mimetypes
import os
import random
import re
import struct
import time
import uuid
import zlib
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

from aiohttp import WSMsgType, web

KNOWN_CLASSES = {
    "EmptyImage",
    "ImageInvert",
    "ImageScale",
    "SaveImage",
    "LoadImage",
    "PreviewImage",
    "SaveGLB",
    "Preview3D",
    "Hy3D21ExportMesh",
    "CheckpointLoaderSimple",
    "SaveVideo",
    "SaveAnimatedWEBP",
    "SaveAnimatedPNG",
    "VHS_VideoCombine",
    "SaveAudio",
    "PreviewAny",
    "PrimitiveString",
}
# A minimal binary glTF header (magic, version 2, total length): enough to be a .glb file.
TINY_GLB = b"glTF" + struct.pack("<II", 2, 12)
# The first box of an MP4 file (ftyp, brand isom): what a player sniffs.
TINY_MP4 = struct.pack(">I", 16) + b"ftypisom" + struct.pack(">I", 512)
# A RIFF/WEBP header: what SaveAnimatedWEBP's files start with.
TINY_WEBP = b"RIFF" + struct.pack("<I", 4) + b"WEBP"
# A FLAC stream marker: what SaveAudio's default format starts with.
TINY_FLAC = b"fLaC" + bytes(34)
STATE = web.AppKey("state", dict)
# GET routes of ComfyUI-Manager (the pinned pack's manager_server.py) that change state.
MANAGER_GET_ACTIONS = (
    "/manager/reboot",
    "/manager/queue/update_all",
    "/manager/queue/start",
    "/comfyui_manager/comfyui_switch_version",
    "/snapshot/restore",
    "/manager/policy/update",
    "/manager/channel_url_list",
    "/manager/db_mode",
)


INDEX = """<!doctype html><title>ComfyUI</title><h1 id=app>ComfyUI app</h1><p id=ws>connecting</p>
<script type=module>
const api = new EventTarget();
function connect() {
  let opened = false;
  const s = new WebSocket((location.protocol == "https:" ? "wss://" : "ws://") + location.host + "/ws?clientId=page");
  s.onopen = () => { opened = true; };
  s.onmessage = (e) => { document.getElementById("ws").textContent = JSON.parse(e.data).type; };
  s.onclose = () => {
    setTimeout(connect, 300);
    if (opened) api.dispatchEvent(new CustomEvent("reconnecting"));
  };
}
window.comfyAPI = {api: {api}, app: {app: {registerExtension: (ext) => { window.extensions = [...(window.extensions || []), ext.name]; }}}};
connect();
for (const url of await (await fetch("/extensions")).json()) await import(url);
window.extensionsLoaded = true;
</script>"""


def tiny_png(width: int = 8, height: int = 8, value: int = 255) -> bytes:
    """A valid grey PNG, built with zlib so the fake needs no imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes([value]) * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def tiny_wav(seconds: float = 0.25, rate: int = 16000) -> bytes:
    """A valid mono 16-bit WAV of a 440 Hz tone (stdlib only), for audio upload inputs."""
    import io
    import math
    import wave

    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
        for i in range(int(seconds * rate))
    )
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return buf.getvalue()


def status_msg(state: dict) -> dict:
    return {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": len(state["queue"])}}}}


async def broadcast(state: dict, msg: dict | bytes, client_id: str | None = None) -> None:
    for cid, ws in list(state["sockets"].items()):
        if client_id is not None and cid != client_id:
            continue
        if ws.closed:
            continue
        if isinstance(msg, bytes):
            await ws.send_bytes(msg)
        else:
            await ws.send_str(json.dumps(msg))


def save_output(state: dict, node: dict, suffix: str, data: bytes, tail: str = "_") -> tuple[str, str]:
    """Write a file as ComfyUI's savers name it: `{prefix}_{counter:05}_.ext` (core), or
    `{prefix}_{counter:05}.ext` with tail="" (VideoHelperSuite)."""
    prefix = os.path.normpath(str(node.get("inputs", {}).get("filename_prefix", "ComfyUI")))
    sub, _, stem = prefix.rpartition("/")
    folder = state["output"] / sub
    # folder_paths.get_save_image_path: a prefix may name subfolders, never leave output/
    root = os.path.abspath(state["output"])
    if os.path.commonpath((root, os.path.abspath(folder))) != root:
        raise ValueError("Saving image outside the output folder is not allowed.")
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{stem}_{len(list(folder.glob(stem + '_*'))) + 1:05d}{tail}{suffix}"
    (folder / name).write_bytes(data)
    return sub, name


def saved(sub: str, name: str, kind: str = "output") -> dict:
    """ComfyUI's entry for a saved file (comfy_api's SavedResult)."""
    return {"filename": name, "subfolder": sub, "type": kind}


def save_preview(state: dict) -> dict:
    """PreviewImage: a PNG in temp/, named with the random prefix ComfyUI gives each preview
    node (`ComfyUI_temp_` and five letters), which no input of the prompt sets."""
    letters = "".join(random.choice("abcdefghijklmnopqrstupvxyz") for _ in range(5))
    name = f"ComfyUI_temp_{letters}_00001_.png"
    state["temp"].mkdir(parents=True, exist_ok=True)
    (state["temp"] / name).write_bytes(tiny_png())
    return saved("", name, "temp")


def node_output(state: dict, node: dict, values: dict):
    """What a node leaves behind, shaped as in ComfyUI's and the packs' code: a history /
    `executed` output dict for output nodes, the string that a node returning one hands on
    (the Hunyuan3D pack's exporter, PrimitiveString), else None."""
    cls, inputs = node["class_type"], node.get("inputs", {})

    def linked(name: str, default=""):
        value = inputs.get(name, default)
        return values.get(str(value[0]), default) if isinstance(value, list) else value

    if cls == "SaveImage":
        return {"images": [saved(*save_output(state, node, ".png", tiny_png()))]}
    if cls == "PreviewImage":
        return {"images": [save_preview(state)]}
    if cls == "SaveAnimatedWEBP":  # comfy_extras/nodes_images.py: "animated" is frames != 1
        return {"images": [saved(*save_output(state, node, ".webp", TINY_WEBP))], "animated": [True]}
    if cls == "SaveAnimatedPNG":
        return {"images": [saved(*save_output(state, node, ".png", tiny_png()))], "animated": [True]}
    if cls == "SaveVideo":  # comfy_extras/nodes_video.py: ui.PreviewVideo lists videos as "images"
        return {"images": [saved(*save_output(state, node, ".mp4", TINY_MP4))], "animated": [True]}
    if cls == "VHS_VideoCombine":  # videohelpersuite/nodes.py: one preview under "gifs"
        # its first frame (with the workflow) and the video share one counter
        sub, first_frame = save_output(state, node, ".png", tiny_png(), tail="")
        name = first_frame.removesuffix(".png") + ".mp4"
        (state["output"] / sub / name).write_bytes(TINY_MP4)
        return {
            "gifs": [
                {
                    **saved(sub, name),
                    "format": "video/h264-mp4",
                    "frame_rate": 8.0,
                    "workflow": first_frame,
                    "fullpath": str(state["output"] / sub / name),
                }
            ]
        }
    if cls == "SaveAudio":  # comfy_extras/nodes_audio.py: {"audio": results}
        return {"audio": [saved(*save_output(state, node, ".flac", TINY_FLAC))]}
    if cls == "SaveGLB":  # comfy_extras/nodes_hunyuan3d.py: {"3d": results}
        return {"3d": [saved(*save_output(state, node, ".glb", TINY_GLB))]}
    if cls == "Hy3D21ExportMesh":
        sub, name = save_output(state, node, "." + inputs.get("file_format", "glb"), TINY_GLB)
        return f"{sub}/{name}" if sub else name
    if cls == "Preview3D":  # comfy_extras/nodes_load_3d.py: the path it was given, and the camera
        return {"result": [linked("model_file"), None]}
    if cls == "PrimitiveString":
        return str(inputs.get("value", ""))
    if cls == "PreviewAny":  # comfy_extras/nodes_preview_any.py: a string is shown as it is
        return {"text": [linked("source", "None")]}
    return None


async def run_in_turn(state: dict, prompt_id: str, prompt: dict, client_id: str | None) -> None:
    """ComfyUI runs one prompt at a time, in queue order; a prompt deleted from the queue
    (POST /queue {"delete": [...]}) before its turn never runs."""
    async with state["run_lock"]:
        if prompt_id in state["deleted"]:
            return
        state["running"] = prompt_id
        began = time.time()
        try:
            await state["executor"](state, prompt_id, prompt, client_id)
        finally:
            state["running"] = None
            # its own clock, as ComfyUI's prompt worker takes and ends each run: the gap
            # between one run's end and the next one's start is time its GPU would idle
            state["runs"].append([prompt_id, began, time.time()])


def queue_item(state: dict, prompt_id: str, prompt: dict) -> list:
    """ComfyUI's queue item, `[number, prompt_id, prompt, extra_data, outputs_to_execute]`,
    which its history entry keeps as `prompt` (execution.PromptQueue.task_done)."""
    return state["items"].get(prompt_id) or [0, prompt_id, prompt, {}, []]


def finish_error(state: dict, prompt_id: str, prompt: dict, messages: list) -> None:
    """What ComfyUI's task_done records for a failed or interrupted run."""
    state["history"][prompt_id] = {
        "prompt": queue_item(state, prompt_id, prompt),
        "outputs": {},
        "status": {"status_str": "error", "completed": False, "messages": messages},
    }
    state["queue"].remove(prompt_id)


async def execute(state: dict, prompt_id: str, prompt: dict, client_id: str | None) -> None:
    """Run a prompt the way ComfyUI reports it; SaveImage writes a real PNG."""
    started = {"prompt_id": prompt_id, "timestamp": 0}
    messages: list = [["execution_start", started]]
    # As ComfyUI does, execution_start goes out as the prompt starts executing; the run's time
    # (`delay`) is then spent in it, as a real run's in its nodes.
    state["starts"][prompt_id] = time.time()
    await broadcast(state, {"type": "execution_start", "data": started}, client_id)
    for _ in range(int(state["delay"] / 0.05)):  # an interrupt lands during the wait too
        if prompt_id in state["interrupt"]:
            break
        await asyncio.sleep(0.05)
    await broadcast(
        state,
        {"type": "execution_cached", "data": {"nodes": [], "prompt_id": prompt_id, "timestamp": 0}},
        client_id,
    )
    messages.append(["execution_cached", {"nodes": [], "prompt_id": prompt_id, "timestamp": 0}])
    outputs: dict = {}
    values: dict = {}  # string results of nodes, for inputs linked to them
    executed: list[str] = []
    for node_id, node in prompt.items():
        await broadcast(
            state,
            {"type": "executing", "data": {"node": node_id, "display_node": node_id, "prompt_id": prompt_id}},
            client_id,
        )
        if prompt_id in state["interrupt"]:  # ComfyUI checks between nodes and sampler steps
            data = {
                "prompt_id": prompt_id,
                "node_id": node_id,
                "node_type": node["class_type"],
                "executed": executed,
                "timestamp": 0,
            }
            # ComfyUI sends it to the prompt's client; broadcast only without one
            await broadcast(state, {"type": "execution_interrupted", "data": data}, client_id)
            finish_error(state, prompt_id, prompt, messages + [["execution_interrupted", data]])
            await broadcast(state, status_msg(state))
            return
        if node["class_type"] == "FailingNode" or node.get("inputs", {}).get("fail"):
            data = {
                "prompt_id": prompt_id,
                "node_id": node_id,
                "node_type": node["class_type"],
                "exception_message": "simulated failure",
                "exception_type": "RuntimeError",
                # traceback.format_tb(...), as ComfyUI's execution.py records it: frames only
                "traceback": ['  File "execution.py", line 496, in execute\n    output_data = ...\n'],
                "executed": executed,
                "current_inputs": {},
                "current_outputs": [],
                "timestamp": 0,
            }
            await broadcast(state, {"type": "execution_error", "data": data}, client_id)
            finish_error(state, prompt_id, prompt, messages + [["execution_error", data]])
            await broadcast(state, status_msg(state))
            return
        executed.append(node_id)
        for step in range(1, 3):
            await broadcast(
                state,
                {
                    "type": "progress",
                    "data": {"value": step, "max": 2, "prompt_id": prompt_id, "node": node_id},
                },
                client_id,
            )
        # a binary preview frame: event type 1 (PREVIEW_IMAGE), format 2 (PNG), image bytes
        await broadcast(state, struct.pack(">II", 1, 2) + tiny_png(2, 2), client_id)
        out = node_output(state, node, values)
        if isinstance(out, str):
            values[node_id] = out
        elif out is not None:
            outputs[node_id] = out
            await broadcast(
                state,
                {
                    "type": "executed",
                    "data": {"node": node_id, "display_node": node_id, "output": out, "prompt_id": prompt_id},
                },
                client_id,
            )
    await broadcast(
        state, {"type": "execution_success", "data": {"prompt_id": prompt_id, "timestamp": 0}}, client_id
    )
    messages.append(["execution_success", {"prompt_id": prompt_id, "timestamp": 0}])
    # ComfyUI records the history only after execution_success (the prompt worker's
    # task_done), then sends the final executing/null; history_delay widens that gap.
    await asyncio.sleep(state["history_delay"])
    state["history"][prompt_id] = {
        "prompt": queue_item(state, prompt_id, prompt),
        "outputs": outputs,
        "status": {"status_str": "success", "completed": True, "messages": messages},
    }
    state["queue"].remove(prompt_id)
    await broadcast(state, {"type": "executing", "data": {"node": None, "prompt_id": prompt_id}}, client_id)
    await broadcast(state, status_msg(state))


def create_app(
    output_dir: Path,
    delay: float = 0.0,
    executor=None,
    known_classes: set[str] | None = None,
    history_delay: float = 0.0,
    web_dirs: dict[str, Path] | None = None,
    multi_user: bool = False,
) -> web.Application:
    """The stand-in's app.

    Extension points (for suites that need more than the built-in run): `executor` is an
    async callable `(state, prompt_id, prompt, client_id)` that replaces `execute`, e.g. to
    replay a recorded WebSocket sequence through `broadcast`; it must finish the prompt the
    way `execute` does (history entry, queue removal, final status). `known_classes` widens
    the class names that POST /prompt accepts. `web_dirs` maps pack names to front-end
    extension folders, served at /extensions/NAME/ as ComfyUI serves a pack's WEB_DIRECTORY.
    `multi_user` is ComfyUI's --multi-user: the users of `<user dir>/users.json`, read now.
    """
    web_dirs = dict(web_dirs or {})
    users_file = Path(output_dir).parent / "user" / "users.json"
    users = json.loads(users_file.read_text()) if multi_user and users_file.is_file() else {}
    state = {
        "output": Path(output_dir),
        "input": Path(output_dir).parent / "input",
        "temp": Path(output_dir).parent / "temp",
        "user": Path(output_dir).parent / "user" / "default",
        "queue": [],
        "items": {},  # prompt id -> its queue item
        "users": users if multi_user else {"default": "default"},
        "manager_calls": [],
        "hits": Counter(),
        "in_flight": 0,
        "most_in_flight": 0,
        "history": {},
        "sockets": {},
        "delay": delay,
        "tasks": set(),
        "settings": {},
        "counter": 0,
        "executor": executor or execute,
        "history_delay": history_delay,
        "run_lock": asyncio.Lock(),
        "running": None,
        "deleted": set(),
        "interrupt": set(),
        "starts": {},
        "runs": [],
        "known_classes": KNOWN_CLASSES | set(known_classes or ()),
    }
    r = web.RouteTableDef()

    @r.get("/")
    async def index(_):
        # ComfyUI serves its front end here; a page that does what that front end does on
        # the paths the suite tests: opens the WebSocket (on close: "reconnecting", then a
        # new one 300 ms later), exposes `api` and `app` to extensions through
        # window.comfyAPI and the /scripts shims, and imports every script /extensions lists.
        return web.Response(content_type="text/html", text=INDEX)

    @r.get("/scripts/{name}.js")
    async def shim(request):
        name = request.match_info["name"]
        if name not in ("api", "app"):
            return web.Response(status=404)
        return web.Response(
            content_type="text/javascript", text=f"export const {name} = window.comfyAPI.{name}.{name};\n"
        )

    @r.get("/system_stats")
    async def system_stats(_):
        return web.json_response(
            {
                "system": {"os": "posix", "comfyui_version": "fake", "argv": ["main.py"]},
                "devices": [{"name": "cpu", "type": "cpu"}],
            }
        )

    @r.get("/queue")
    async def get_queue(_):
        items = {p: queue_item(state, p, {}) for p in state["queue"]}
        running = [items[p] for p in state["queue"] if p == state["running"]]
        pending = [items[p] for p in state["queue"] if p != state["running"]]
        return web.json_response({"queue_running": running, "queue_pending": pending})

    @r.post("/queue")
    async def post_queue(request):
        body = await request.json()
        pending = [p for p in state["queue"] if p != state["running"]]
        doomed = pending if body.get("clear") else []
        doomed += [p for p in body.get("delete", []) if p in pending and p not in doomed]
        for p in doomed:
            state["queue"].remove(p)
            state["deleted"].add(p)
        return web.Response(status=200)

    @r.get("/prompt")
    async def get_prompt(_):
        return web.json_response({"exec_info": {"queue_remaining": len(state["queue"])}})

    @r.post("/prompt")
    async def post_prompt(request):
        body = await request.json()
        prompt = body.get("prompt")
        if not isinstance(prompt, dict) or not prompt:
            return web.json_response(
                {
                    "error": {
                        "type": "no_prompt",
                        "message": "No prompt provided",
                        "details": "",
                        "extra_info": {},
                    },
                    "node_errors": {},
                },
                status=400,
            )
        errors = {
            nid: {
                "errors": [
                    {
                        "type": "invalid_class",
                        "message": f"Cannot find class {n.get('class_type')}",
                        "details": "",
                        "extra_info": {},
                    }
                ],
                "dependent_outputs": [],
                "class_type": n.get("class_type"),
            }
            for nid, n in prompt.items()
            if n.get("class_type") not in state["known_classes"] | {"FailingNode"}
        }
        if errors:
            return web.json_response(
                {
                    "error": {
                        "type": "prompt_outputs_failed_validation",
                        "message": "Prompt outputs failed validation",
                        "details": "",
                        "extra_info": {},
                    },
                    "node_errors": errors,
                },
                status=400,
            )
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        state["counter"] += 1
        # ComfyUI orders its queue by this number: the client's, or the next one (negated
        # for "front"); the stand-in runs in arrival order but records it
        number = (
            float(body["number"]) if "number" in body else state["counter"] * (-1 if body.get("front") else 1)
        )
        # as server.py post_prompt: extra_data kept as sent, with client_id put in it
        extra_data = body.get("extra_data", {})
        if "client_id" in body:
            extra_data["client_id"] = body["client_id"]
        state["items"][prompt_id] = [number, prompt_id, prompt, extra_data, list(prompt)]
        state["queue"].append(prompt_id)
        task = asyncio.ensure_future(run_in_turn(state, prompt_id, prompt, extra_data.get("client_id")))
        state["tasks"].add(task)
        task.add_done_callback(state["tasks"].discard)
        return web.json_response({"prompt_id": prompt_id, "number": state["counter"], "node_errors": {}})

    @r.get("/history")
    async def history(request):
        # max_items: the newest ones, oldest first, as PromptQueue.get_history gives them
        items = list(state["history"].items())
        if "max_items" in request.query:
            items = items[-int(request.query["max_items"]) :]
        return web.json_response(dict(items))

    @r.get("/history/{prompt_id}")
    async def history_one(request):
        pid = request.match_info["prompt_id"]
        return web.json_response({pid: state["history"][pid]} if pid in state["history"] else {})

    @r.post("/history")
    async def post_history(request):
        body = await request.json()
        if body.get("clear"):
            state["history"].clear()
        for p in body.get("delete", []):
            state["history"].pop(p, None)
        return web.Response(status=200)

    def input_files() -> list[str]:
        folder = state["input"]
        return sorted(f.name for f in folder.iterdir() if f.is_file()) if folder.is_dir() else []

    def node_info(c: str) -> dict:
        # LoadImage lists every file at the top of input/, as nodes.py's does (subfolders'
        # files are not listed, though a node takes them as "sub/x.png")
        required = {"image": [input_files(), {"image_upload": True}]} if c == "LoadImage" else {}
        return {"input": {"required": required}, "output": [], "name": c}

    @r.get("/object_info")
    async def object_info(_):
        return web.json_response({c: node_info(c) for c in sorted(state["known_classes"])})

    @r.get("/object_info/{node_class}")
    async def object_info_one(request):
        c = request.match_info["node_class"]
        return web.json_response({c: node_info(c)} if c in state["known_classes"] else {})

    @r.get("/internal/files/{kind}")
    async def top_files(request):
        kind = request.match_info["kind"]
        if kind not in ("output", "input", "temp"):
            return web.json_response({"error": "Invalid directory type"}, status=400)
        folder = state[kind]
        found = sorted(
            (f for f in folder.iterdir() if f.is_file()) if folder.is_dir() else (),
            key=lambda f: -f.stat().st_mtime,
        )
        return web.json_response([f.name for f in found])

    def folder_of(kind: str | None) -> Path | None:
        return {"output": state["output"], "input": state["input"], "temp": state["temp"]}.get(kind or "")

    @r.get("/view")
    async def view(request):
        # As server.py's view_image: an annotated name ("x.png [output]") picks the folder,
        # a name starting with / or holding .. is a 400, the subfolder must stay inside, and
        # only the name's last part is read.
        name = request.query.get("filename", "")
        base = None
        for annotation, kind in (("[output]", "output"), ("[input]", "input"), ("[temp]", "temp")):
            if name.endswith(annotation):
                name, base = name[: -len(annotation) - 1], folder_of(kind)
        if not name:
            return web.Response(status=404)
        if name[0] == "/" or ".." in name:
            return web.Response(status=400)
        base = base or folder_of(request.query.get("type", "output"))
        if base is None:
            return web.Response(status=400)
        if "subfolder" in request.query:
            full = os.path.join(base, request.query["subfolder"])
            if os.path.commonpath((os.path.abspath(full), os.path.abspath(base))) != os.path.abspath(base):
                return web.Response(status=403)
            base = Path(full)
        name = os.path.basename(name)
        path = base / name
        if not path.is_file():
            return web.Response(status=404)
        # As ComfyUI's: the type from the name, inline, with only HTML, JS and CSS forced to
        # download (so an uploaded SVG is served as a page that runs its scripts).
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if ctype in {
            "text/html",
            "text/html-sandboxed",
            "application/xhtml+xml",
            "text/javascript",
            "text/css",
        }:
            ctype = "application/octet-stream"
        return web.FileResponse(
            path, headers={"Content-Disposition": f'filename="{name}"', "Content-Type": ctype}
        )  # handles Range like ComfyUI's

    async def upload(request):
        # As server.py's image_upload: the file lands in the folder `type` names (input by
        # default) under `subfolder`, which may not leave it; the answer names both. The file
        # is written as it arrives (ComfyUI spools it to a temp file), so large uploads fit.
        reader = await request.multipart()
        fields: dict[str, str] = {}
        spooled = None
        async for part in reader:
            if part.filename is not None and part.name == "image" and spooled is None:
                spooled = (
                    os.path.basename(part.filename),
                    state["input"].parent / f".upload-{uuid.uuid4().hex}",
                )
                spooled[1].parent.mkdir(parents=True, exist_ok=True)
                with open(spooled[1], "wb") as f:
                    while chunk := await part.read_chunk(1 << 20):
                        f.write(chunk)
            elif part.filename is None:
                fields.setdefault(part.name or "", await part.text())
        if spooled is None or not spooled[0]:
            return web.Response(status=400)
        name, tmp = spooled
        try:
            kind = fields.get("type") or "input"
            upload_dir = folder_of(kind)
            if upload_dir is None:
                return web.Response(status=500)  # ComfyUI's get_dir_by_type fails the same way
            subfolder = fields.get("subfolder", "")
            folder = Path(os.path.join(upload_dir, os.path.normpath(subfolder)))
            root = os.path.abspath(upload_dir)
            if os.path.commonpath((root, os.path.abspath(folder / name))) != root:
                return web.Response(status=400)
            folder.mkdir(parents=True, exist_ok=True)
            stem, ext = os.path.splitext(name)
            data = tmp.read_bytes() if tmp.stat().st_size < (1 << 20) else None
            overwrite = fields.get("overwrite") in ("true", "1")
            i = 1
            # ComfyUI's "name (1).png" rule, except that a file with the same bytes is kept
            # under its name (its compare_image_hash): uploading one file twice gives one name.
            while (folder / name).exists() and not overwrite and (folder / name).read_bytes() != data:
                name = f"{stem} ({i}){ext}"
                i += 1
            os.replace(tmp, folder / name)
        finally:
            tmp.unlink(missing_ok=True)
        return web.json_response({"name": name, "subfolder": subfolder, "type": kind})

    r.post("/upload/image")(upload)
    r.post("/upload/mask")(upload)

    @r.post("/interrupt")
    async def interrupt(request):
        # ComfyUI interrupts the running prompt; given a prompt_id, only if that one runs.
        try:
            body = await request.json()
        except ValueError:
            body = {}
        target = (body or {}).get("prompt_id") or state["running"]
        if target and target == state["running"]:
            state["interrupt"].add(target)
        return web.Response(status=200)

    @r.post("/free")
    async def free(_):
        return web.Response(status=200)

    @r.get("/internal/logs")
    async def logs(_):
        return web.json_response("log line\n")

    @r.get("/internal/folder_paths")
    async def folder_paths(_):
        return web.json_response({"checkpoints": [["/models/checkpoints"], []]})

    def request_user(request) -> str:
        # As ComfyUI's user_manager: with --multi-user the user is the comfy-user header's,
        # "default" without one, and one not in users.json is a KeyError (a 500).
        user = request.headers.get("comfy-user", "default") if multi_user else "default"
        if user not in state["users"]:
            raise KeyError("Unknown user: " + user)
        return user

    def user_root(request) -> Path:
        return (state["user"].parent / request_user(request)).resolve()

    def user_path(request, name: str) -> Path | None:
        # As ComfyUI's user_manager: the route's {file} arrives with "%2F" already decoded to
        # "/" (aiohttp matches on the path with %2F kept, then unquotes the match), a name
        # still holding "%" is unquoted once more, and nothing may leave the user's folder.
        if "%" in name:
            name = unquote(name)
        root = user_root(request)
        path = (root / name).resolve()
        return path if path == root or root in path.parents else None

    @r.get("/userdata")
    async def userdata(request):
        folder = request.query.get("dir")
        if folder is None:  # the stand-in's own shortcut; ComfyUI answers 400 without dir
            return web.json_response(["workflows/a.json"])
        path = user_path(request, folder)
        if path is None:
            return web.Response(status=403, text="Invalid directory")
        if not path.is_dir():
            return web.Response(status=404, text="Directory not found")
        recurse = request.query.get("recurse", "").lower() == "true"
        found = path.rglob("*") if recurse else path.glob("*")
        return web.json_response(sorted(f.relative_to(path).as_posix() for f in found if f.is_file()))

    def user_file(request, param: str = "file") -> Path | web.Response:
        """The existing file a route names, or ComfyUI's 403 (outside the folder) or 404."""
        path = user_path(request, request.match_info[param])
        if path is None:
            return web.Response(status=403)
        return path if path.is_file() else web.Response(status=404)

    @r.get("/userdata/{file}")
    async def userdata_get(request):
        path = user_file(request)
        return path if isinstance(path, web.Response) else web.FileResponse(path)

    def writable(request, param: str) -> Path | web.Response:
        """Where a route writes: ComfyUI's 403 outside the folder, or its 409 for an
        existing file with overwrite=false."""
        path = user_path(request, request.match_info[param])
        if path is None:
            return web.Response(status=403)
        if request.query.get("overwrite", "true") == "false" and path.exists():
            return web.Response(status=409, text="File already exists")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def written(request, path: Path) -> web.Response:
        return web.json_response(path.relative_to(user_root(request)).as_posix())

    @r.post("/userdata/{file}")
    async def userdata_post(request):
        path = writable(request, "file")
        if isinstance(path, web.Response):
            return path
        path.write_bytes(await request.read())
        return written(request, path)

    @r.delete("/userdata/{file}")
    async def userdata_delete(request):
        path = user_file(request)
        if isinstance(path, web.Response):
            return path
        path.unlink()
        return web.Response(status=204)

    @r.post("/userdata/{file}/move/{dest}")
    async def userdata_move(request):
        source = user_file(request)
        if isinstance(source, web.Response):
            return source
        dest = writable(request, "dest")
        if isinstance(dest, web.Response):
            return dest
        source.replace(dest)
        return written(request, dest)

    @r.get("/v2/userdata")
    async def userdata2(_):
        return web.json_response([])

    @r.get("/users")
    async def users(_):
        if multi_user:
            return web.json_response({"storage": "server", "users": state["users"]})
        return web.json_response({"storage": "server", "migrated": True})

    @r.post("/users")
    async def post_users(request):
        # app/user_manager.py add_user: the id is the name made safe plus a uuid, kept in
        # users.json (read only at start)
        username = (await request.json())["username"]
        if username in state["users"].values():
            return web.json_response({"error": "Duplicate username."}, status=400)
        user_id = re.sub("[^a-zA-Z0-9-_]+", "-", username.strip()) + "_" + str(uuid.uuid4())
        state["users"][user_id] = username
        (state["user"].parent / "users.json").write_text(json.dumps(state["users"]))
        return web.json_response(user_id)

    @r.get("/settings")
    async def settings(request):
        return web.json_response(state["settings"].setdefault(request_user(request), {}))

    @r.post("/settings")
    async def post_settings(request):
        state["settings"].setdefault(request_user(request), {}).update(await request.json())
        return web.Response(status=200)

    @r.get("/features")
    async def features(_):
        return web.json_response({"supports_preview_metadata": True})

    @r.get("/embeddings")
    async def embeddings(_):
        return web.json_response([])

    @r.get("/extensions")
    async def extensions(_):
        return web.json_response(
            [
                f"/extensions/{name}/{f.name}"
                for name, folder in sorted(web_dirs.items())
                for f in sorted(Path(folder).glob("*.js"))
            ]
        )

    # ComfyUI-Manager changes state on GET; the stand-in records that such a call arrived.
    async def manager_action(request):
        state["manager_calls"].append(request.path)
        return web.json_response({})

    for path in MANAGER_GET_ACTIONS:
        r.get(path)(manager_action)

    @r.get("/ws")
    async def ws(request):
        sock = web.WebSocketResponse(max_msg_size=0)
        await sock.prepare(request)
        cid = request.query.get("clientId") or uuid.uuid4().hex
        state["last_ws_query"] = dict(request.query)
        state["sockets"][cid] = sock
        await sock.send_str(
            json.dumps({**status_msg(state), "data": {**status_msg(state)["data"], "sid": cid}})
        )
        try:
            async for _msg in sock:
                pass
        finally:
            state["sockets"].pop(cid, None)
        return sock

    @web.middleware
    async def count(request, handler):
        # What reached "ComfyUI", and how many requests it held at once (for the proxy's
        # amplification tests).
        state["hits"][request.path] += 1
        state["last_request"] = request.raw_path
        state["in_flight"] += 1
        state["most_in_flight"] = max(state["most_in_flight"], state["in_flight"])
        try:
            return await handler(request)
        finally:
            state["in_flight"] -= 1

    core = list(r)
    app = web.Application(client_max_size=1 << 30, middlewares=[count])
    app[STATE] = state
    for route in core:  # ComfyUI serves every core route under /api/ too
        app.router.add_route(route.method, route.path, route.handler)
        app.router.add_route(route.method, "/api" + route.path, route.handler)

    # --- diagnostics for the relay tests (not ComfyUI routes) ------------------------
    async def echo(request):
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "path": request.raw_path,
                "headers": dict(request.headers),
                "body_len": len(body),
                "query": dict(request.query),
            }
        )

    async def stream(request):
        size = int(request.match_info["size"])
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.content_length = size
        await resp.prepare(request)
        chunk = b"x" * (1 << 20)
        sent = 0
        while sent < size:
            n = min(len(chunk), size - sent)
            await resp.write(chunk[:n])
            sent += n
        await resp.write_eof()
        return resp

    async def upload_count(request):
        total = 0
        async for data in request.content.iter_chunked(1 << 20):
            total += len(data)
        return web.json_response({"received": total})

    async def ws_echo(request):
        sock = web.WebSocketResponse(max_msg_size=0)
        await sock.prepare(request)
        async for msg in sock:
            if msg.type == WSMsgType.TEXT:
                if msg.data.startswith("close:"):
                    await sock.close(code=int(msg.data[6:]))
                    break
                await sock.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await sock.send_bytes(msg.data)
        return sock

    async def slow(request):
        await asyncio.sleep(float(request.query.get("s", "0.5")))
        return web.json_response({"slept": True})

    for name, folder in web_dirs.items():
        app.router.add_static(f"/extensions/{name}", folder)

    async def hits(_request):
        return web.json_response(
            {
                "hits": state["hits"],
                "most_in_flight": state["most_in_flight"],
                "manager_calls": state["manager_calls"],
            }
        )

    app.router.add_route("*", "/_test/echo{tail:.*}", echo)
    app.router.add_get("/_test/hits", hits)
    app.router.add_get("/_test/slow", slow)
    app.router.add_get("/_test/stream/{size}", stream)
    app.router.add_post("/_test/upload", upload_count)
    app.router.add_get("/_test/ws", ws_echo)

    async def starts(_):  # when each prompt began running, for benchmarks
        return web.json_response(state["starts"])

    app.router.add_get("/_test/starts", starts)

    async def runs(_):  # [prompt_id, began, ended] per run, in the order run, for benchmarks
        return web.json_response(state["runs"])

    app.router.add_get("/_test/runs", runs)
    return app


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="a ComfyUI stand-in for tests")
    p.add_argument("--listen", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8188)
    p.add_argument("--output-directory", default="output")
    p.add_argument("--multi-user", action="store_true")
    # not a ComfyUI flag: seconds each prompt takes before it starts, for fault tests
    p.add_argument("--fake-delay", type=float, default=0.0)
    # nor this: seconds between a run's last output and its history entry (a kill lands there)
    p.add_argument("--fake-history-delay", type=float, default=0.0)
    args, _unknown = p.parse_known_args(argv)
    out = Path(args.output_directory)
    out.mkdir(parents=True, exist_ok=True)
    print(f"fake ComfyUI on {args.listen}:{args.port}", flush=True)
    web.run_app(
        create_app(
            out, delay=args.fake_delay, history_delay=args.fake_history_delay, multi_user=args.multi_user
        ),
        host=args.listen,
        port=args.port,
        print=None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
