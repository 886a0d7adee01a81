"""`comfyctl run`: run a workflow on a ComfyUI server (bare, or through the login proxy)
and download its outputs; `--v2` runs it through the Comfy API v2 instead (run_v2.py).

Its exit codes (2 a bad argument or a --set/--param/--input naming nothing in the workflow,
3 to 6 the prompt's fate) are those of every comfyctl command: comfyctl/errors.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import mimetypes
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from comfy_jobs.outputs import all_outputs
from comfy_stack import variables as v
from comfy_stack.env import Env, add_flags
from comfy_stack.files import SHARED, atomic_writer, write_atomic
from comfyctl.errors import ComfyctlError, NodeFailed, Rejected, TimedOut, Unreachable
from comfyctl.progress import NodeProgress
from comfyctl.workflow import Workflow, WorkflowError, parse_value, split_assignment


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("workflow", type=Path, help="API-format workflow (workflows/api/*.json)")
    add_flags(p, v.RUN)
    p.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="upload FILE (an image, audio or video) and use the name the server gives it "
        "for NAME (a parameter or NODE.INPUT)",
    )
    p.add_argument("--out", type=Path, default=Path("outputs"), help="where outputs go (default ./outputs)")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of paths")
    p.add_argument(
        "--timeout", type=float, default=3600, help="seconds to wait for the result (default 3600)"
    )
    p.add_argument(
        "--v2",
        action="store_true",
        help="run through the Comfy API v2 (/api/v2/jobs): a durable job, SSE progress, outputs as assets",
    )


@dataclass(frozen=True)
class Server:
    """Where to send the workflow and how to sign in: each from its flag, else its variable."""

    url: str
    token: str = field(default="", repr=False)
    user: str = ""
    password: str = field(default="", repr=False)

    @classmethod
    def from_args(cls, args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Server:
        env = Env(environ, error=WorkflowError)
        return cls(
            env.get(v.COMFY_SERVER, args.server),
            env.get(v.COMFY_TOKEN, args.token),
            env.get(v.COMFY_USER, args.user),
            env.get(v.COMFY_PASSWORD, args.password),
        )

    def auth_headers(self) -> dict[str, str]:
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.user:
            return {"Authorization": aiohttp.BasicAuth(self.user, self.password).encode()}
        return {}


async def check(resp: aiohttp.ClientResponse, what: str) -> None:
    if resp.status in (401, 403):
        detail = (await resp.text())[:300]
        raise Unreachable(
            f"{what}: the server refused the credentials ({resp.status}): {detail}; "
            "pass --token or --user/--password"
        )
    if resp.status >= 400 and resp.status != 400:
        raise Unreachable(f"{what}: HTTP {resp.status}: {(await resp.text())[:300]}")


async def upload(session, base: str, path: Path) -> str:
    """Images, audio and video alike go to /upload/image in the form field `image`, as
    ComfyUI's frontend uploads them; the file is streamed, not read into memory."""
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise WorkflowError(f"--input {path}: cannot read it ({exc.strerror})") from None
    with f:
        form = aiohttp.FormData()
        form.add_field(
            "image",
            f,
            filename=path.name,
            content_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream",
        )
        async with session.post(base + "/upload/image", data=form) as r:
            await check(r, "upload")
            if r.status != 200:
                raise Rejected(f"upload of {path} refused: {await r.text()}")
            body = await r.json()
    return f"{body['subfolder']}/{body['name']}" if body.get("subfolder") else body["name"]


def describe_node_errors(body: dict) -> str:
    lines = [body.get("error", {}).get("message", "prompt rejected")]
    for node, err in (body.get("node_errors") or {}).items():
        for e in err.get("errors", []):
            lines.append(
                f"  node {node} ({err.get('class_type')}): {e.get('message')} {e.get('details', '')}".rstrip()
            )
    return "\n".join(lines)


async def follow(ws, prompt_id: str, bars: NodeProgress, deadline: float) -> None:
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimedOut(f"no result within the timeout; prompt {prompt_id} may still be running")
        try:
            msg = await asyncio.wait_for(ws.receive(), left)
        except asyncio.TimeoutError:
            raise TimedOut(f"no result within the timeout; prompt {prompt_id} may still be running") from None
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            raise Unreachable("the server closed the WebSocket before the prompt finished")
        if msg.type != aiohttp.WSMsgType.TEXT:
            continue  # binary preview frames
        data = json.loads(msg.data)
        kind, body = data.get("type"), data.get("data", {})
        if body.get("prompt_id") not in (None, prompt_id):
            continue
        if kind == "execution_error":
            raise NodeFailed(
                f"node {body.get('node_id')} ({body.get('node_type')}) failed: "
                f"{body.get('exception_type', '')}: {body.get('exception_message', '').strip()}"
            )
        if kind == "execution_interrupted":
            raise NodeFailed("the prompt was interrupted on the server")
        if kind == "progress":
            bars.step(body.get("node"), body.get("value"), body.get("max"))
        if kind == "executing" and body.get("node") is not None:
            bars.executing(body["node"])
        if kind == "execution_success" or (
            kind == "executing" and body.get("node") is None and body.get("prompt_id") == prompt_id
        ):
            return


async def read_history(session, base: str, prompt_id: str, deadline: float) -> dict:
    """The prompt's history entry. ComfyUI sends execution_success before it records the
    history (the final `executing` with node null comes after), so a client that reads at
    once can find nothing yet: ask again until the entry is there."""
    while True:
        async with session.get(f"{base}/history/{prompt_id}") as r:
            await check(r, "reading the result")
            entry = (await r.json()).get(prompt_id)
        if entry is not None:
            return entry
        if time.monotonic() >= deadline:
            raise TimedOut(f"prompt {prompt_id} finished but its history never appeared on the server")
        await asyncio.sleep(0.1)


async def download_outputs(session, base: str, outputs: dict, out_dir: Path) -> list[Path]:
    """Every output of the run (comfy_jobs.outputs reads them, as the v2 worker does) into
    `out_dir`: files keep their subfolders, texts become <node>_text_<i>.txt."""
    paths: list[Path] = []
    for out in all_outputs(outputs):
        target = out_dir / out.name if out.text is not None else out_dir / out.subfolder / out.name
        if out_dir.resolve() not in target.resolve().parents:
            continue  # a name that would escape --out
        if target in paths:
            continue  # two nodes naming one file (a SaveGLB's mesh shown by a Preview3D)
        target.parent.mkdir(parents=True, exist_ok=True)
        if out.text is not None:
            write_atomic(target, out.text.encode(), mode=SHARED)
        else:
            async with session.get(base + "/view", params=out.view_params()) as r:
                await check(r, "download")
                with atomic_writer(target, mode=SHARED) as f:
                    async for chunk in r.content.iter_chunked(1 << 20):
                        f.write(chunk)
        paths.append(target)
    return paths


async def run(args) -> dict:
    wf = Workflow.load(args.workflow)
    for flag, items in (("--set", args.set), ("--param", args.param)):
        for item in items:
            key, value = split_assignment(item, flag)
            if flag == "--param" and key not in wf.params:
                raise WorkflowError(
                    f"--param {key}: this workflow's parameters are "
                    f"{', '.join(sorted(wf.params)) or 'none'} (use --set NODE.INPUT=VALUE)"
                )
            wf.set(key, parse_value(value))
    for item in args.input:
        wf.target(split_assignment(item, "--input")[0])  # fail before uploading anything
    server = Server.from_args(args)
    base = server.url
    client_id = uuid.uuid4().hex
    deadline = time.monotonic() + args.timeout
    try:
        async with aiohttp.ClientSession(headers=server.auth_headers()) as session:
            if args.v2:
                from comfyctl.run_v2 import run_v2

                return await run_v2(args, wf, session, base, deadline)
            for item in args.input:
                key, file = split_assignment(item, "--input")
                wf.set(key, await upload(session, base, Path(file)))
            ws = await session.ws_connect(base.replace("http", "ws", 1) + f"/ws?clientId={client_id}")
            async with session.post(
                base + "/prompt", json={"prompt": wf.prompt, "client_id": client_id}
            ) as r:
                await check(r, "queueing the prompt")
                body = await r.json()
                if r.status == 400 or body.get("node_errors"):
                    raise Rejected(describe_node_errors(body))
            prompt_id = body["prompt_id"]
            with NodeProgress(wf.prompt, enabled=not args.json) as bars:
                await follow(ws, prompt_id, bars, deadline)
            await ws.close()
            entry = await read_history(session, base, prompt_id, deadline)
            paths = await download_outputs(session, base, entry.get("outputs", {}), args.out)
    except aiohttp.WSServerHandshakeError as exc:
        raise Unreachable(
            f"{base}/ws refused the connection ({exc.status}); check the URL and credentials"
        ) from None
    except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError) as exc:
        raise Unreachable(f"cannot reach {base}: {exc}") from None
    return {"prompt_id": prompt_id, "outputs": [str(p) for p in paths]}


def main(args: argparse.Namespace) -> int:
    try:
        result = asyncio.run(run(args))
    except ComfyctlError as exc:
        print(f"comfyctl run: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        print(json.dumps(result))
    else:
        for p in result["outputs"]:
            print(p)
    return 0
