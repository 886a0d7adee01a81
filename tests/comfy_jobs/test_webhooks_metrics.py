"""Webhooks on terminal states (Standard Webhooks signatures, retried), /metrics and /readyz."""

from __future__ import annotations

import asyncio
import base64
import os

import aiohttp
import pytest
from aiohttp import web
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from comfy_jobs import webhooks
from tests.comfy_jobs.conftest import SMOKE, wait_job


@pytest.fixture
async def receiver(aiohttp_server):
    got: list[tuple[bytes, dict]] = []
    answers = [500]  # the first delivery fails; the retry is accepted

    async def hook(request):
        got.append((await request.read(), dict(request.headers)))
        return web.Response(status=answers.pop(0) if answers else 204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = await aiohttp_server(app)
    return server, got


async def test_terminal_states_are_posted_signed_and_retried(make_v2, receiver, monkeypatch):
    monkeypatch.setattr(webhooks, "BACKOFF_S", 0.05)
    server, got = receiver
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    stack = await make_v2(webhook_url=f"http://127.0.0.1:{server.port}/hook", webhook_secret=secret)
    async with aiohttp.ClientSession(headers=stack.auth) as api:
        async with api.post(stack.url("/api/v2/jobs"), json={"workflow": SMOKE}) as r:
            job = await r.json()
        await wait_job(api, stack, job["id"])
    for _ in range(100):
        if len(got) >= 2:
            break
        await asyncio.sleep(0.05)
    assert len(got) == 2
    (body1, h1), (body2, h2) = got
    assert h1["webhook-id"] == h2["webhook-id"]  # the same message, retried
    verified = Webhook(secret).verify(body2, h2)  # the reference library accepts the signature
    assert verified["type"] == "job.succeeded" and verified["data"]["id"] == job["id"]
    assert verified["data"]["outputs"][0]["id"].startswith("asset_")
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(os.urandom(24)).decode()).verify(body2, h2)
    await asyncio.sleep(0.3)
    assert len(got) == 2  # delivered once it succeeded, not again


async def test_metrics_show_queue_running_attempts_and_durations(make_v2):
    stack = await make_v2(run_worker=False)
    async with aiohttp.ClientSession(headers=stack.auth) as api:
        for _ in range(2):
            async with api.post(stack.url("/api/v2/jobs"), json={"workflow": SMOKE}) as r:
                assert r.status == 201
        async with api.get(stack.url("/metrics")) as r:
            text = await r.text()
    assert "comfy_jobs_queue_depth 2" in text and "comfy_jobs_running 0" in text
    assert "comfy_job_attempts_total 0" in text and "comfy_job_execution_seconds_count 0" in text


async def test_metrics_after_a_run(v2, api):
    async with api.post(v2.url("/api/v2/jobs"), json={"workflow": SMOKE}) as r:
        job = await r.json()
    await wait_job(api, v2, job["id"])
    async with api.get(v2.url("/metrics")) as r:
        text = await r.text()
    assert "comfy_job_attempts_total 1" in text and 'comfy_jobs_finished_total{status="succeeded"} 1' in text
    assert "comfy_job_execution_seconds_count 1" in text and "comfy_jobs_queue_depth 0" in text


async def test_readyz_reports_a_broken_ledger(v2):
    async with aiohttp.ClientSession() as s:
        async with s.get(v2.url("/readyz")) as r:
            assert r.status == 200
        await v2.svc.ledger.close()
        async with s.get(v2.url("/readyz")) as r:
            assert r.status == 503 and "ledger" in (await r.json())["reason"]
