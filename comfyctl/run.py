"""`comfyctl run`: run a workflow on a ComfyUI server (bare, or through the login proxy)
and download its outputs; `--v2` runs it through the Comfy API v2 instead (run_v2.py).

The whole run, downloads included, is bounded by --timeout, and what it writes by
--max-output-bytes, inside --out only (comfyctl/saving.py): nothing a server sends can
hold it longer, fill the disk or write elsewhere. Its exit codes (2 a bad argument or a
--set/--param/--input naming nothing in the workflow, 3 to 6 the prompt's fate, 10 an
answer refused) are those of every comfyctl command: comfyctl/errors.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import mimetypes
import re
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from comfy_jobs import comfy
from comfy_jobs.outputs import MalformedOutputs, Output, all_outputs
from comfy_jobs.progress import Tracker
from comfy_stack import variables as v
from comfy_stack.env import add_flags
from comfyctl.errors import (
    BadAnswer,
    ComfyctlError,
    NodeFailed,
    Rejected,
    TimedOut,
    Unreachable,
)
from comfyctl.progress import NodeProgress
from comfyctl.remote import MAX_JSON, Run, Server, expect, is_number, shown
from comfyctl.run_v2 import run_v2
from comfyctl.saving import Budget, contained, save
from comfyctl.workflow import Workflow, WorkflowError, parse_value, split_assignment

__all__ = ["BadAnswer", "NodeFailed", "Rejected", "Server", "TimedOut", "Unreachable", "WorkflowError"]

DEFAULT_MAX_OUTPUT = 10 << 30
# ComfyUI's messages whose shape the run depends on (the rest, a pack's own, pass by)
TRACKED = ("progress", "executing", "executed", "execution_cached", "execution_error", "execution_success")
SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)i?B?\s*$", re.I)


def size(text: str) -> int:
    """A byte count: `123`, `500M`, `10G` (powers of 1024)."""
    m = SIZE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (a number of bytes, or with K, M, G, T)")
    return int(m.group(1)) << (10 * " KMGT".index((m.group(2) or " ").upper()))


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
        "--timeout",
        type=float,
        default=3600,
        help="seconds the whole run may take, downloads included (default 3600)",
    )
    p.add_argument(
        "--max-output-bytes",
        type=size,
        default=DEFAULT_MAX_OUTPUT,
        metavar="SIZE",
        help="the most the run's outputs may weigh together, e.g. 500M or 20G (default 10G)",
    )
    p.add_argument(
        "--v2",
        action="store_true",
        help="run through the Comfy API v2 (/api/v2/jobs): a durable job, SSE progress, outputs as assets",
    )


@contextmanager
def answered(what: str, server: str):
    """The ComfyUI client's errors (comfy_jobs.comfy, shared with the v2 worker) as
    comfyctl's typed errors, each with its exit code."""
    try:
        yield
    except comfy.Rejected as exc:
        raise Rejected(describe_node_errors(exc.body)) from None
    except comfy.Malformed as exc:
        raise BadAnswer(f"{what}: {shown(exc)}; is --server a ComfyUI?") from None
    except comfy.FileGone as exc:
        raise Unreachable(f"{what}: the server has no {shown(exc)} (HTTP 404)") from None
    except comfy.Unreachable as exc:
        if exc.status in (401, 403):
            raise Unreachable(
                f"{what}: the server refused the credentials ({exc.status}); pass --token or --user/--password"
            ) from None
        if exc.status == 400:
            raise Rejected(f"{what}: refused (HTTP 400)") from None
        raise Unreachable(
            f"{what}: {shown(exc)}" if exc.sent else f"cannot reach {server}: {shown(exc)}"
        ) from None


async def upload(client: comfy.ComfyUI, path: Path) -> str:
    """Images, audio and video alike go to /upload/image in the form field `image`, as
    ComfyUI's frontend uploads them; the file is streamed, not read into memory. No
    overwrite: a different file of that name stays, and the server names this one anew."""
    if not path.is_file():
        raise WorkflowError(f"--input {path}: cannot read it (no such file)")
    ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    try:
        with answered(f"uploading {path}", client.base):
            return await client.upload_input(path.name, path, overwrite=False, content_type=ctype)
    except OSError as exc:
        raise WorkflowError(f"--input {path}: cannot read it ({exc.strerror})") from None


def describe_node_errors(body: dict) -> str:
    err = body.get("error")
    lines = [
        shown(err.get("message", "prompt rejected") if isinstance(err, dict) else err or "prompt rejected")
    ]
    node_errors = body.get("node_errors")
    for node, e in (node_errors if isinstance(node_errors, dict) else {}).items():
        errors = e.get("errors") if isinstance(e, dict) else None
        for x in errors if isinstance(errors, list) else []:
            if isinstance(x, dict):
                lines.append(
                    shown(
                        f"  node {node} ({e.get('class_type')}): {x.get('message')} {x.get('details', '')}",
                        2000,
                    ).rstrip()
                )
    return "\n".join(lines)


def message(msg: aiohttp.WSMessage) -> tuple[str | None, dict]:
    """(type, data) of one of ComfyUI's text messages; what cannot be one is BadAnswer."""
    try:
        data = json.loads(msg.data)
    except ValueError:
        raise BadAnswer(
            f"the WebSocket sent {shown(repr(msg.data[:80]))}, not JSON; is --server a ComfyUI?"
        ) from None
    data = expect(data, dict, "a WebSocket message")
    kind = data.get("type")
    body = data.get("data", {})
    if kind not in TRACKED:
        return kind, body if isinstance(body, dict) else {}  # a pack's own message: not ours to judge
    body = expect(body, dict, f"the WebSocket's {shown(kind)} message")
    if kind == "progress" and not (is_number(body.get("value")) and is_number(body.get("max"))):
        raise BadAnswer(
            f"a progress message with value {shown(repr(body.get('value')), 40)} of {shown(repr(body.get('max')), 40)}"
        )
    if kind == "execution_cached" and not isinstance(body.get("nodes") or [], list):
        raise BadAnswer(f"an execution_cached message with nodes {shown(repr(body.get('nodes')), 40)}")
    return kind, body


async def follow(ws, prompt_id: str, bars: NodeProgress, tracker: Tracker) -> None:
    """Until the prompt ends, its progress shown from the snapshot the v2 API would serve."""
    while True:
        msg = await ws.receive()
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            raise Unreachable("the server closed the WebSocket before the prompt finished")
        if msg.type != aiohttp.WSMsgType.TEXT:
            continue  # binary preview frames
        kind, body = message(msg)
        if body.get("prompt_id") not in (None, prompt_id):
            continue
        if kind == "execution_error":
            raise NodeFailed(
                shown(
                    f"node {body.get('node_id')} ({body.get('node_type')}) failed: "
                    f"{body.get('exception_type', '')}: {str(body.get('exception_message', '')).strip()}",
                    2000,
                )
            )
        if kind == "execution_interrupted":
            raise NodeFailed("the prompt was interrupted on the server")
        if kind in TRACKED and tracker.feed(kind, body):
            bars.show(tracker.snapshot())
        if kind == "execution_success" or (
            kind == "executing" and body.get("node") is None and body.get("prompt_id") == prompt_id
        ):
            return


async def read_history(client: comfy.ComfyUI, prompt_id: str) -> dict:
    """The prompt's history entry. ComfyUI sends execution_success before it records the
    history (the final `executing` with node null comes after), so a client that reads at
    once can find nothing yet: ask again until the entry is there (--timeout bounds it)."""
    while True:
        with answered("reading the result", client.base):
            history = expect(await client.history(prompt_id), dict, "reading the result")
        entry = history.get(prompt_id)
        if entry is not None:
            return expect(entry, dict, f"the history of prompt {prompt_id}")
        await asyncio.sleep(0.1)


def plan_outputs(outputs, out_dir: Path) -> list[tuple[Output, Path]]:
    """Where each output of the run goes (comfy_jobs.outputs reads them, as the v2 worker
    does): files keep their subfolders, texts become <node>_text_<i>.txt. Planned whole
    before anything is downloaded, so a path the server names outside --out stops the run
    with nothing written."""
    try:
        found = all_outputs(outputs)
    except MalformedOutputs as exc:
        raise BadAnswer(f"reading the result: {shown(exc)}; is --server a ComfyUI?") from None
    plan: dict[Path, Output] = {}
    for out in found:
        parts = (out.name,) if out.text is not None else (out.subfolder, out.name)
        # two nodes may name one file (a SaveGLB's mesh that a Preview3D shows): fetched once
        plan.setdefault(contained(out_dir, *parts), out)
    return [(out, target) for target, out in plan.items()]


async def _one(data: bytes):
    yield data


async def download_outputs(client: comfy.ComfyUI, run: Run, outputs, out_dir: Path) -> list[Path]:
    paths: list[Path] = []
    for out, target in plan_outputs(outputs, out_dir):
        if out.text is not None:
            await save(_one(out.text.encode()), target, run.budget, f"the text of node {shown(out.node_id)}")
        else:
            run.doing = f"downloading {shown(out.name)}"
            with answered(run.doing, client.base):
                async with client.view(out.name, out.subfolder, out.folder_type) as r:
                    await save(r.content.iter_chunked(1 << 20), target, run.budget, run.doing)
        paths.append(target)
    return paths


def prepare(args) -> Workflow:
    """The workflow with --set and --param applied, every --input target checked: all
    before anything is sent."""
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
    return wf


async def run_native(args, wf: Workflow, run: Run) -> dict:
    client = comfy.ComfyUI(run.server.url, run.session, run.auth, max_json=MAX_JSON, max_msg_size=MAX_JSON)
    for item in args.input:
        key, file = split_assignment(item, "--input")
        run.doing = f"uploading {file}"
        wf.set(key, await upload(client, Path(file)))
    client_id, prompt_id = uuid.uuid4().hex, str(uuid.uuid4())
    run.doing = "connecting to the WebSocket"
    ws = await client.websocket(client_id)
    run.doing = "queueing the prompt"
    with answered("queueing the prompt", client.base):
        body = expect(await client.submit(prompt_id, wf.prompt, client_id, None), dict, "queueing the prompt")
    if body.get("node_errors"):
        raise Rejected(describe_node_errors(body))
    if body.get("prompt_id", prompt_id) != prompt_id:
        raise BadAnswer(
            f"queueing the prompt: the server named it {shown(repr(body['prompt_id']), 60)}, not {prompt_id}"
        )
    run.doing = f"waiting for prompt {prompt_id} (it may still be running on the server)"
    with NodeProgress(wf.prompt, enabled=not args.json) as bars:
        await follow(ws, prompt_id, bars, Tracker(wf.prompt))
    await ws.close()
    entry = await read_history(client, prompt_id)
    run.doing = "downloading the outputs"
    paths = await download_outputs(client, run, entry.get("outputs", {}), args.out)
    return {"prompt_id": prompt_id, "outputs": [str(p) for p in paths]}


async def _run(args, wf: Workflow, run: Run) -> dict:
    # No timeout of aiohttp's own: --timeout bounds the whole run (run() below), and its
    # default 5 minutes would end a long download or job with a bare TimeoutError.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as run.session:
            return await (run_v2(args, wf, run) if args.v2 else run_native(args, wf, run))
    except aiohttp.WSServerHandshakeError as exc:
        raise Unreachable(
            f"{run.server.url}/ws refused the connection ({exc.status}); check the URL and credentials"
        ) from None
    except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError) as exc:
        raise Unreachable(f"cannot reach {run.server.url}: {shown(exc)}") from None
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise Unreachable(f"{run.doing}: the connection failed ({type(exc).__name__} {shown(exc)})") from None


async def run(args) -> dict:
    wf = prepare(args)
    state = Run(Server.from_args(args), Budget(args.max_output_bytes))
    try:
        return await asyncio.wait_for(_run(args, wf, state), args.timeout)
    except asyncio.TimeoutError:
        raise TimedOut(f"not finished within --timeout {args.timeout:g} s, while {state.doing}") from None


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
