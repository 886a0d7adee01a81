"""`comfyctl run --v2`: the same run through the Comfy API v2 (/api/v2/jobs): inputs become
assets, the job is recorded by the server before it runs (and survives a ComfyUI crash
there), progress comes from its SSE stream, and outputs are downloaded as assets.

The submission carries an Idempotency-Key, so a connection that breaks while submitting is
retried without queueing the job twice.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import time
import uuid
from pathlib import Path

import aiohttp

from comfy_stack.files import SHARED, atomic_writer
from comfyctl.progress import NodeProgress
from comfyctl.workflow import WorkflowError

TERMINAL = ("succeeded", "failed", "canceled", "expired")


async def v2_error(resp: aiohttp.ClientResponse, what: str):
    """The exception for a refused v2 request (the contract's {"error": {code, message}})."""
    from comfyctl.run import Rejected, Unreachable

    try:
        err = (await resp.json()).get("error") or {}
    except (ValueError, aiohttp.ContentTypeError):
        err = {"message": (await resp.text())[:300]}
    if isinstance(err, str):
        err = {"message": err}
    text = f"{what}: {err.get('code', resp.status)}: {err.get('message', '')}"
    if err.get("details", {}) and err["details"].get("node_errors"):
        text += "\n" + json.dumps(err["details"]["node_errors"], indent=1)[:4000]
    if resp.status in (401, 403):
        return Unreachable(text + "; pass --token or --user/--password")
    if resp.status == 404 and what == "submitting the job":
        return Unreachable(f"{what}: this server has no /api/v2 (HTTP 404); run without --v2")
    return Rejected(text) if resp.status in (409, 422, 429) else Unreachable(f"{text} (HTTP {resp.status})")


async def upload_asset(session, base: str, path: Path) -> dict:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WorkflowError(f"--input {path}: cannot read it ({exc.strerror})") from None
    ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    form = aiohttp.FormData()
    form.add_field("content_type", ctype)
    form.add_field("file_path", path.name)
    form.add_field("tags", "input")
    form.add_field("file", data, filename=path.name, content_type=ctype)
    async with session.post(base + "/api/v2/assets", data=form) as r:
        if r.status not in (200, 201):
            raise await v2_error(r, f"uploading {path}")
        asset = await r.json()
    return {
        "__type": "core/ASSET",
        "info": {"id": asset["id"], "hash": asset["hash"], "file_path": path.name},
    }


async def submit(session, base: str, prompt: dict) -> dict:
    from comfyctl.run import Unreachable

    key = str(uuid.uuid4())
    for attempt in range(3):
        try:
            async with session.post(
                base + "/api/v2/jobs", json={"workflow": prompt}, headers={"Idempotency-Key": key}
            ) as r:
                if r.status == 429:
                    await asyncio.sleep(min(60, int(r.headers.get("Retry-After", "5"))))
                    continue
                if r.status != 201:
                    raise await v2_error(r, "submitting the job")
                return await r.json()
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError):
            if attempt == 2:
                raise
            await asyncio.sleep(1 + attempt)  # the same key: the server answers with the same job
    raise Unreachable("the server's queue stayed full (429 queue_full); try again later")


async def follow(session, base: str, job: dict, bars: NodeProgress, deadline: float) -> dict:
    """Live events until the terminal status; the job as GET answers it then. The stream is
    only a live view: when it drops, poll once and reconnect."""
    from comfyctl.run import TimedOut

    self_url, events_url = base + job["urls"]["self"], base + job["urls"]["events"]
    while True:
        if time.monotonic() >= deadline:
            raise TimedOut(f"job {job['id']} not finished within the timeout; it keeps running on the server")
        try:
            timeout = aiohttp.ClientTimeout(total=max(1.0, deadline - time.monotonic()), sock_read=60)
            async with session.get(events_url, timeout=timeout) as r:
                event = None
                async for raw in r.content:
                    line = raw.decode("utf-8", "replace").rstrip("\r\n")
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:") and event:
                        data = json.loads(line[5:])
                        if event == "progress" and data.get("current_node"):
                            bars.executing(data["current_node"])
                            if data.get("steps"):
                                bars.step(data["current_node"], data.get("step"), data["steps"])
                        if event == "status" and data.get("status") in TERMINAL:
                            break
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            await asyncio.sleep(1.0)
        async with session.get(self_url) as r:
            if r.status != 200:
                raise await v2_error(r, "reading the job")
            current = await r.json()
        if current["status"] in TERMINAL:
            return current


async def download(session, job: dict, out_dir: Path) -> list[Path]:
    paths = []
    for out in job["outputs"]:
        target = out_dir / out["node_id"] / Path(out["name"]).name
        async with session.get(out["url"]) as r:
            if r.status != 200:
                raise await v2_error(r, f"downloading {out['name']}")
            with atomic_writer(target, mode=SHARED) as f:
                async for chunk in r.content.iter_chunked(1 << 20):
                    f.write(chunk)
        paths.append(target)
    return paths


async def run_v2(args, wf, session, base: str, deadline: float) -> dict:
    from comfyctl.run import NodeFailed, Rejected
    from comfyctl.workflow import split_assignment

    for item in args.input:
        key, file = split_assignment(item, "--input")
        wf.set(key, await upload_asset(session, base, Path(file)))
    job = await submit(session, base, wf.prompt)
    with NodeProgress(wf.prompt, enabled=not args.json) as bars:
        job = await follow(session, base, job, bars, deadline)
    if job["status"] != "succeeded":
        err = job.get("error") or {"code": job["status"], "message": f"the job was {job['status']}"}
        text = f"job {job['id']} {job['status']}: {err.get('code')}: {err.get('message')}"
        if err.get("node_id"):
            text += f" (node {err['node_id']}, {err.get('class_type')})"
        raise Rejected(text) if err.get("code") in ("invalid_workflow", "missing_asset") else NodeFailed(text)
    paths = await download(session, job, args.out)
    return {"job_id": job["id"], "outputs": [str(p) for p in paths]}
