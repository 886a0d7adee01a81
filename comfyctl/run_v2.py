"""`comfyctl run --v2`: the same run through the Comfy API v2 (/api/v2/jobs): inputs become
assets, the job is recorded by the server before it runs (and survives a ComfyUI crash
there), progress comes from its SSE stream, and outputs are downloaded as assets, each
to --out/<node id>/<name> (contained there: comfyctl/saving.py).

The submission carries an Idempotency-Key, so a connection that breaks while submitting is
retried without queueing the job twice. The credentials go only to the server's own
origin: an output URL that names another host is fetched without them.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import uuid
from pathlib import Path

import aiohttp

from comfyctl.errors import BadAnswer, NodeFailed, Rejected, Unreachable
from comfyctl.progress import NodeProgress
from comfyctl.remote import Run, expect, is_number, read_json, shown, snippet
from comfyctl.saving import contained, save
from comfyctl.workflow import WorkflowError, split_assignment

TERMINAL = ("succeeded", "failed", "canceled", "expired")


async def v2_error(resp: aiohttp.ClientResponse, what: str):
    """The exception for a refused v2 request (the contract's {"error": {code, message}})."""
    try:
        err = (await read_json(resp, what)).get("error") or {}
    except BadAnswer:
        err = {"message": await snippet(resp)}
    if not isinstance(err, dict):
        err = {"message": err}
    text = shown(f"{what}: {err.get('code', resp.status)}: {err.get('message', '')}", 1000)
    details = err.get("details")
    if isinstance(details, dict) and details.get("node_errors"):
        text += "\n" + shown(json.dumps(details["node_errors"]), 4000)
    if resp.status in (401, 403):
        return Unreachable(text + "; pass --token or --user/--password")
    if resp.status == 404 and what == "submitting the job":
        return Unreachable(f"{what}: this server has no /api/v2 (HTTP 404); run without --v2")
    if resp.status < 400:  # a success the contract does not answer there
        return BadAnswer(f"{what}: unexpected HTTP {resp.status}; is --server this project's gate?")
    return Rejected(text) if resp.status in (409, 422, 429) else Unreachable(f"{text} (HTTP {resp.status})")


async def upload_asset(run: Run, path: Path) -> dict:
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
    async with run.session.post(run.url("/api/v2/assets"), data=form, headers=run.auth) as r:
        if r.status not in (200, 201):
            raise await v2_error(r, f"uploading {path}")
        asset = await read_json(r, f"uploading {path}")
    what = f"uploading {path}: the asset's"
    return {
        "__type": "core/ASSET",
        "info": {
            "id": expect(asset.get("id"), str, f"{what} id"),
            "hash": expect(asset.get("hash"), str, f"{what} hash"),
            "file_path": path.name,
        },
    }


def retry_after(value: str | None) -> float:
    """Seconds to wait on a 429: Retry-After in seconds, 1 to 60; anything else (an HTTP
    date, a word) means the default 5."""
    try:
        return min(60.0, max(1.0, float(value or "5")))
    except ValueError:
        return 5.0


async def submit(run: Run, prompt: dict) -> dict:
    key = str(uuid.uuid4())
    for attempt in range(3):
        try:
            async with run.session.post(
                run.url("/api/v2/jobs"),
                json={"workflow": prompt},
                headers={**run.auth, "Idempotency-Key": key},
            ) as r:
                if r.status == 429:
                    await asyncio.sleep(retry_after(r.headers.get("Retry-After")))
                    continue
                if r.status != 201:
                    raise await v2_error(r, "submitting the job")
                job = await read_json(r, "submitting the job")
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError):
            if attempt == 2:
                raise
            await asyncio.sleep(1 + attempt)  # the same key: the server answers with the same job
            continue
        expect(job.get("id"), str, "submitting the job: the job's id")
        urls = expect(job.get("urls"), dict, "submitting the job: the job's urls")
        run.server.at(urls.get("self")), run.server.at(urls.get("events"))  # refused now, not later
        return job
    raise Unreachable("the server's queue stayed full (429 queue_full); try again later")


def event_data(event: str, raw: str) -> dict:
    try:
        data = json.loads(raw)
    except ValueError:
        raise BadAnswer(f"the job's {shown(event)} event is not JSON: {shown(repr(raw), 80)}") from None
    return expect(data, dict, f"the job's {shown(event)} event")


def check_progress(data: dict) -> dict:
    """A progress event's snapshot (comfy_jobs.progress builds it on the server), its step
    counts checked: they go to the display."""
    step, steps = data.get("step"), data.get("steps")
    if not all(n is None or is_number(n) for n in (step, steps)):
        raise BadAnswer(f"the job's progress has step {shown(repr(step), 40)} of {shown(repr(steps), 40)}")
    return data


async def follow(run: Run, job: dict, bars: NodeProgress) -> dict:
    """Live events until the terminal status; the job as GET answers it then. The stream is
    only a live view: when it drops, poll once and reconnect (--timeout bounds it all)."""
    self_url, events_url = run.server.at(job["urls"]["self"]), run.server.at(job["urls"]["events"])
    while True:
        try:
            # a stalled stream (no line for 60 s) is dropped and opened again
            timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
            async with run.session.get(
                events_url, timeout=timeout, headers=run.server.headers_for(events_url)
            ) as r:
                event = None
                async for raw in r.content:
                    line = raw.decode("utf-8", "replace").rstrip("\r\n")
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:") and event:
                        data = event_data(event, line[5:])
                        if event == "progress":
                            bars.show(check_progress(data))
                        if event == "status" and data.get("status") in TERMINAL:
                            break
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            await asyncio.sleep(1.0)
        async with run.session.get(self_url, headers=run.server.headers_for(self_url)) as r:
            if r.status != 200:
                raise await v2_error(r, "reading the job")
            current = await read_json(r, "reading the job")
        if expect(current.get("status"), str, "the job's status") in TERMINAL:
            return current


def plan(job: dict, out_dir: Path) -> list[tuple[str, str, Path]]:
    """(url, name, target) for each output, all checked before anything is downloaded."""
    planned = []
    for out in expect(job.get("outputs"), list, "the job's outputs"):
        out = expect(out, dict, "an output of the job")
        node = out.get("node_id")
        node = str(expect(node, int, "an output's node_id")) if not isinstance(node, str) else node
        name = expect(out.get("name"), str, "an output's name")
        planned.append((out.get("url"), name, contained(out_dir, node, name)))
    return planned


async def download(run: Run, job: dict, out_dir: Path) -> list[Path]:
    paths = []
    for url, name, target in plan(job, out_dir):
        url = run.server.at(url)
        run.doing = f"downloading {shown(name)}"
        async with run.session.get(url, headers=run.server.headers_for(url)) as r:
            if r.status != 200:
                raise await v2_error(r, f"downloading {shown(name)}")
            await save(r.content.iter_chunked(1 << 20), target, run.budget, run.doing)
        paths.append(target)
    return paths


async def run_v2(args, wf, run: Run) -> dict:
    for item in args.input:
        key, file = split_assignment(item, "--input")
        run.doing = f"uploading {file}"
        wf.set(key, await upload_asset(run, Path(file)))
    run.doing = "submitting the job"
    job = await submit(run, wf.prompt)
    run.doing = f"waiting for job {shown(job['id'])} (it keeps running on the server)"
    with NodeProgress(wf.prompt, enabled=not args.json) as bars:
        job = await follow(run, job, bars)
    if job["status"] != "succeeded":
        err = job.get("error")
        if not isinstance(err, dict):
            err = {"code": job["status"], "message": f"the job was {job['status']}"}
        text = f"job {job.get('id')} {job['status']}: {err.get('code')}: {err.get('message')}"
        if err.get("node_id"):
            text += f" (node {err['node_id']}, {err.get('class_type')})"
        text = shown(text, 2000)
        raise Rejected(text) if err.get("code") in ("invalid_workflow", "missing_asset") else NodeFailed(text)
    run.doing = "downloading the outputs"
    paths = await download(run, job, args.out)
    return {"job_id": job["id"], "outputs": [str(p) for p in paths]}
