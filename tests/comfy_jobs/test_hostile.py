"""Hostile or broken clients against the v2 API, through the gate in this process: a job
the worker cannot prepare, an upload that stalls, event streams held open by the dozen."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from auth_proxy.v2 import assets as asset_routes
from tests.comfy_jobs.conftest import SMOKE, wait_job
from tests.support import wait_until


def nested(depth: int) -> dict:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return {"1": {"class_type": "EmptyImage", "inputs": {"x": value}}}


async def test_an_error_preparing_a_job_counts_as_an_attempt(make_v2):
    """A job the worker fails on before ComfyUI sees it (here: nested too deep to copy, put
    in the ledger past the submit's check) ends failed after the limit, with the reason.
    Before: given back and claimed again about once a second forever, attempts 0."""
    stack = await make_v2(max_attempts=2)
    await stack.svc.ledger.create_job("job_deep", nested(700), None, None, None, 0, 3600)
    async with aiohttp.ClientSession(headers=stack.auth) as api:
        job = await wait_job(api, stack, "job_deep", timeout=30)
        assert job["status"] == "failed" and job["attempts"] == 2, job
        assert job["error"]["code"] == "worker_error" and "RecursionError" in job["error"]["message"]
        async with api.post(stack.url("/api/v2/jobs"), json={"workflow": SMOKE}) as r:
            after = await r.json()
        assert (await wait_job(api, stack, after["id"]))["status"] == "succeeded"  # the queue moves


async def test_a_stalled_upload_lets_go_of_its_temp_file(make_v2, monkeypatch):
    """A client that starts a file part and stops sending is answered 408 and its temp
    file removed, while it still holds the connection open."""
    monkeypatch.setattr(asset_routes, "IDLE_S", 0.5)
    stack = await make_v2()
    tmp = stack.tmp / "jobs/blobs/tmp"
    head = (
        b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n"
        b"Content-Type: application/octet-stream\r\n\r\n"
    ) + b"x" * 70_000
    request = (
        f"POST /api/v2/assets HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {stack.token}\r\n"
        f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {10 << 20}\r\n\r\n"
    ).encode() + head
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.proxy.port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(4096), 30)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"request_timeout" in answer
        await asyncio.to_thread(wait_until, lambda: not any(tmp.iterdir()), 10, what="the temp file gone")
    finally:
        writer.close()


async def test_event_streams_are_bounded_and_idle_streams_cost_nothing(make_v2):
    stack = await make_v2(run_worker=False)  # no worker: the job stays queued
    ledger, reads, looks = stack.svc.ledger, [], []
    async with aiohttp.ClientSession(headers=stack.auth) as api:
        async with api.post(stack.url("/api/v2/jobs"), json={"workflow": SMOKE}) as r:
            job_id = (await r.json())["id"]
        events_url = stack.url(f"/api/v2/jobs/{job_id}/events")
        streams = []
        for _ in range(16):
            resp = await api.get(events_url)
            assert resp.status == 200 and (await resp.content.readline()).startswith(b"event: status")
            streams.append(resp)
        async with api.get(events_url) as r:
            assert r.status == 429 and (await r.json())["error"]["code"] == "too_many_streams"
            assert "Retry-After" in r.headers

        get_job, fingerprints = ledger.get_job, ledger.fingerprints

        async def counted_get_job(job_id, *whose):
            reads.append(job_id)
            return await get_job(job_id, *whose)

        async def counted_fingerprints(ids):
            looks.append(list(ids))
            return await fingerprints(ids)

        ledger.get_job, ledger.fingerprints = counted_get_job, counted_fingerprints
        # The watch's first look wakes each new stream once; after that, while the job
        # stands still, its looks are one query for all 16 streams and no stream reads.
        await asyncio.to_thread(wait_until, lambda: len(looks) >= 2, 10, what="the watch's looks")
        settled = len(reads)
        await asyncio.to_thread(wait_until, lambda: len(looks) >= 5, 10, what="more looks")
        assert len(reads) == settled and all(ids == [job_id] for ids in looks)

        async with api.post(stack.url(f"/api/v2/jobs/{job_id}/cancel")) as r:
            assert (await r.json())["status"] == "canceled"
        for resp in streams:
            rest = (await asyncio.wait_for(resp.content.read(), 10)).decode()
            last = [line for line in rest.splitlines() if line.startswith("data: ")][-1]
            assert json.loads(last[6:])["status"] == "canceled"
            resp.release()
        async with api.get(events_url) as r:  # the slots are free again
            assert r.status == 200
