"""The contract's status codes, headers and error envelope, operation by operation
(spec/openapi.yaml of Comfy-Org/comfy-api-proxy: the Comfy API v2)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from blake3 import blake3

from comfy_jobs.model import Caller, JobQuery
from tests.comfy_jobs.conftest import SMOKE, wait_job
from tests.support.fake_comfyui import tiny_png


def envelope(body: dict, code: str) -> None:
    assert set(body) == {"error"}, body
    assert (
        body["error"]["code"] == code
        and isinstance(body["error"]["message"], str)
        and body["error"]["message"]
    )


async def upload(api, stack, data: bytes, name: str = "photo.png", **extra) -> aiohttp.ClientResponse:
    form = aiohttp.FormData()
    form.add_field("content_type", "image/png")
    form.add_field("file_path", name)
    for k, v in extra.items():
        form.add_field(k, v)
    form.add_field("file", data, filename=name, content_type="image/png")
    return await api.post(stack.url("/api/v2/assets"), data=form)


# --- the login in front of every v2 operation ---------------------------------------------
@pytest.mark.parametrize(
    "method,path",
    [
        ("POST", "/api/v2/jobs"),
        ("GET", "/api/v2/jobs/job_x"),
        ("GET", "/api/v2/jobs/job_x/events"),
        ("POST", "/api/v2/jobs/job_x/cancel"),
        ("POST", "/api/v2/assets"),
        ("POST", "/api/v2/assets/from-hash"),
        ("GET", "/api/v2/assets/asset_x"),
        ("GET", "/api/v2/assets/asset_x/content"),
    ],
)
async def test_every_operation_needs_the_login_and_answers_the_envelope(v2, method, path):
    async with aiohttp.ClientSession() as anon:
        async with anon.request(method, v2.url(path), json={}) as r:
            assert r.status == 401
            envelope(await r.json(), "unauthorized")
        async with anon.request(method, v2.url(path), headers={"Authorization": "Bearer nope"}) as r:
            assert r.status == 401
            envelope(await r.json(), "unauthorized")


async def test_head_by_hash_needs_the_login(v2):
    async with aiohttp.ClientSession() as anon:
        async with anon.head(v2.url("/api/v2/assets/by-hash/blake3:" + "0" * 64)) as r:
            assert r.status == 401


async def test_comfyui_native_v2_paths_are_still_relayed(v2, api):
    async with api.get(v2.url("/api/v2/userdata")) as r:  # ComfyUI's own route, not ours
        assert r.status == 200 and await r.json() == []


# --- jobs -------------------------------------------------------------------------------
async def test_submit_then_poll_to_success(v2, api):
    async with api.post(v2.url("/api/v2/jobs"), json={"workflow": SMOKE}) as r:
        assert r.status == 201
        job = await r.json()
        assert "Idempotency-Replayed" not in r.headers and r.headers["Location"] == job["urls"]["self"]
    assert job["status"] in ("queued", "running") and job["id"].startswith("job_")
    for field in (
        "created_at",
        "started_at",
        "completed_at",
        "expires_at",
        "queue_position",
        "progress",
        "outputs",
        "error",
        "urls",
    ):
        assert field in job
    assert job["urls"] == {
        "self": f"/api/v2/jobs/{job['id']}",
        "events": f"/api/v2/jobs/{job['id']}/events",
        "cancel": f"/api/v2/jobs/{job['id']}/cancel",
    }
    done = await wait_job(api, v2, job["id"])
    assert done["status"] == "succeeded" and done["error"] is None and done["completed_at"]
    assert done["progress"]["value"] == 1.0 and done["progress"]["nodes_total"] == 3
    [out] = done["outputs"]
    assert out["node_id"] == "4" and out["type"] == "image" and out["hash"].startswith("blake3:")
    async with api.get(out["url"]) as r:
        data = await r.read()
    assert r.status == 200 and r.headers["Content-Type"] == "image/png"
    assert "blake3:" + blake3(data).hexdigest() == out["hash"] and len(data) == out["size_bytes"]
    async with api.get(v2.url("/api/v2/jobs")) as r:
        listed = await r.json()
    assert r.status == 200 and [j["id"] for j in listed["jobs"]] == [job["id"]]
    async with api.get(v2.url(f"/api/v2/jobs/{job['id']}/workflow")) as r:
        assert (await r.json()) == {"workflow": SMOKE, "format": "api"}


async def test_unknown_job_is_not_found(v2, api):
    for method, path in (
        ("GET", "/api/v2/jobs/job_nope"),
        ("POST", "/api/v2/jobs/job_nope/cancel"),
        ("GET", "/api/v2/jobs/job_nope/events"),
    ):
        async with api.request(method, v2.url(path)) as r:
            assert r.status == 404
            envelope(await r.json(), "not_found")


@pytest.mark.parametrize(
    "body,code",
    [
        ({"workflow": {"nodes": [], "links": [], "last_node_id": 0}}, "workflow_format_ui"),
        ({"workflow": {}}, "invalid_workflow"),
        ({"workflow": {"1": {"class_type": "NoSuchNode", "inputs": {}}}}, "invalid_workflow"),
        (
            {"workflow": {"1": {"class_type": "ImageInvert", "inputs": {"image": ["7", 0]}}}},
            "invalid_workflow",
        ),
        ({"workflow": {"1": {"inputs": {}}}}, "invalid_workflow"),
        (
            {
                "workflow": {
                    "1": {
                        "class_type": "LoadImage",
                        "inputs": {"image": {"__type": "core/ASSET", "info": {"id": "asset_missing"}}},
                    }
                }
            },
            "missing_asset",
        ),
        ({"workflow": SMOKE, "webhook_url": "https://example.invalid/"}, "invalid_request"),
        ({"workflow": SMOKE, "extra_data": {"other": 1}}, "invalid_request"),
        ({"nothing": 1}, "invalid_request"),
    ],
)
async def test_invalid_submissions(v2, api, body, code):
    async with api.post(v2.url("/api/v2/jobs"), json=body) as r:
        assert r.status == 422
        answer = await r.json()
    envelope(answer, code)
    if body.get("workflow", {}).get("1", {}).get("class_type") == "NoSuchNode":
        assert answer["error"]["details"]["node_errors"]["1"][0]["reason"] == "unknown_class"
    assert v2.up_state["history"] == {} and v2.up_state["counter"] == 0


async def test_not_json_is_invalid_request(v2, api):
    async with api.post(
        v2.url("/api/v2/jobs"), data=b"{nope", headers={"Content-Type": "application/json"}
    ) as r:
        assert r.status == 422
        envelope(await r.json(), "invalid_request")


async def test_idempotency_replays_the_same_job_and_refuses_another_body(v2, api):
    key = {"Idempotency-Key": "8b9f3c6e-0000-4000-8000-000000000001"}
    results = await asyncio.gather(
        *[api.post(v2.url("/api/v2/jobs"), json={"workflow": SMOKE}, headers=key) for _ in range(5)]
    )  # all at once
    bodies = [await r.json() for r in results]
    assert {r.status for r in results} == {201}
    assert len({b["id"] for b in bodies}) == 1
    assert sorted(r.headers["Idempotency-Replayed"] for r in results) == ["false"] + ["true"] * 4
    async with api.post(
        v2.url("/api/v2/jobs"), json={"workflow": {**SMOKE, "9": SMOKE["2"]}}, headers=key
    ) as r:
        assert r.status == 422
        envelope(await r.json(), "idempotency_key_reuse")
    await wait_job(api, v2, bodies[0]["id"])
    assert v2.up_state["counter"] == 1  # ComfyUI saw one prompt


async def test_full_queue_is_429_with_retry_after(make_v2):
    stack = await make_v2(queue_limit=2, run_worker=False)
    key = {"Idempotency-Key": "k-full"}
    async with aiohttp.ClientSession(headers=stack.auth) as api:
        for headers in (key, {}):
            async with api.post(stack.url("/api/v2/jobs"), json={"workflow": SMOKE}, headers=headers) as r:
                assert r.status == 201
        async with api.post(stack.url("/api/v2/jobs"), json={"workflow": SMOKE}) as r:
            assert r.status == 429
            assert int(r.headers["Retry-After"]) >= 1
            envelope(await r.json(), "queue_full")
        # a retry of an accepted job is answered from the ledger, not refused by the limit
        async with api.post(stack.url("/api/v2/jobs"), json={"workflow": SMOKE}, headers=key) as r:
            assert r.status == 201 and r.headers["Idempotency-Replayed"] == "true"
        assert (await stack.svc.ledger.counts())["queued"] == 2


async def test_queue_position_and_cancel_of_a_queued_job(make_v2):
    stack = await make_v2(run_worker=False)
    async with aiohttp.ClientSession(headers=stack.auth) as api:
        ids = []
        for _ in range(3):
            async with api.post(stack.url("/api/v2/jobs"), json={"workflow": SMOKE}) as r:
                ids.append((await r.json())["id"])
        positions = []
        for job_id in ids:
            async with api.get(stack.url(f"/api/v2/jobs/{job_id}")) as r:
                positions.append((await r.json())["queue_position"])
        assert positions == [0, 1, 2]
        async with api.post(stack.url(f"/api/v2/jobs/{ids[0]}/cancel")) as r:
            assert r.status == 200 and (await r.json())["status"] == "canceled"
        async with api.post(stack.url(f"/api/v2/jobs/{ids[0]}/cancel")) as r:  # idempotent
            assert r.status == 200 and (await r.json())["status"] == "canceled"
        async with api.get(stack.url(f"/api/v2/jobs/{ids[1]}")) as r:
            assert (await r.json())["queue_position"] == 0


async def test_cancel_a_running_job(make_v2):
    stack = await make_v2(upstream_delay=30.0)
    async with aiohttp.ClientSession(headers=stack.auth) as api:
        async with api.post(stack.url("/api/v2/jobs"), json={"workflow": SMOKE}) as r:
            job = await r.json()
        await wait_job(api, stack, job["id"], ("running",))
        for _ in range(100):
            if stack.up_state["running"]:
                break
            await asyncio.sleep(0.05)
        async with api.post(stack.url(f"/api/v2/jobs/{job['id']}/cancel")) as r:
            assert r.status == 200 and (await r.json())["status"] in ("canceling", "canceled")
        done = await wait_job(api, stack, job["id"])
    assert done["status"] == "canceled" and done["outputs"] == []
    [entry] = stack.up_state["history"].values()
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"  # ComfyUI was interrupted


async def test_a_node_failure_fails_the_job_with_the_node_error(v2, api):
    graph = {**SMOKE, "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0], "fail": True}}}
    async with api.post(v2.url("/api/v2/jobs"), json={"workflow": graph}) as r:
        job = await r.json()
    done = await wait_job(api, v2, job["id"])
    assert done["status"] == "failed" and done["attempts"] == 1
    err = done["error"]
    assert (
        err["code"] == "node_execution_error" and err["node_id"] == "2" and err["class_type"] == "ImageInvert"
    )
    assert err["message"] == "simulated failure" and 'File "execution.py"' in err["traceback"]


async def test_a_workflow_comfyui_rejects_fails_with_its_node_errors_and_is_not_retried(v2, api, monkeypatch):
    async def cannot_ask():  # ComfyUI could not be asked at submit time: the job is accepted
        return None

    monkeypatch.setattr(v2.svc, "known_classes", cannot_ask)
    graph = {"1": {"class_type": "NoSuchNode", "inputs": {}}}
    async with api.post(v2.url("/api/v2/jobs"), json={"workflow": graph}) as r:
        assert r.status == 201
        job = await r.json()
    done = await wait_job(api, v2, job["id"])
    assert done["status"] == "failed" and done["attempts"] == 1
    assert done["error"]["code"] == "invalid_workflow" and done["error"]["node_id"] == "1"
    assert "invalid_class" in str(done["error"]["details"]["node_errors"])
    await asyncio.sleep(0.5)
    attempts = await v2.svc.ledger.attempts_of(job["id"])
    assert [a["outcome"] for a in attempts] == ["rejected"]


async def test_sse_stream_snapshot_then_terminal_status(make_v2):
    stack = await make_v2(upstream_delay=0.3)
    async with aiohttp.ClientSession(headers=stack.auth) as api:
        async with api.post(stack.url("/api/v2/jobs"), json={"workflow": SMOKE}) as r:
            job = await r.json()
        async with api.get(stack.url(job["urls"]["events"])) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
            text = (await r.read()).decode()
    frames = [f for f in text.split("\n\n") if f.strip()]
    events = [f.split("\n")[0].removeprefix("event: ") for f in frames if f.startswith("event:")]
    assert events[0] == "status" and "progress" in events and "output" in events
    assert frames[-1].endswith('"status":"succeeded","queue_position":null}')
    assert "id:" not in text  # live push only: no event ids, no replay


# --- assets -----------------------------------------------------------------------------
async def test_asset_upload_dedup_hash_and_content_ranges(v2, api):
    data = tiny_png(16, 16, 3)
    digest = "blake3:" + blake3(data).hexdigest()
    async with api.head(v2.url(f"/api/v2/assets/by-hash/{digest}")) as r:
        assert r.status == 404
    async with await upload(api, v2, data) as r:
        assert r.status == 201
        first = await r.json()
    assert first["hash"] == digest and first["created_new"] is True and first["size_bytes"] == len(data)
    assert first["url"] == v2.url(f"/api/v2/assets/{first['id']}/content") and first["url_expires_at"]
    async with await upload(api, v2, data, name="again.png") as r:
        assert r.status == 200 and (await r.json())["created_new"] is False
    async with api.head(v2.url(f"/api/v2/assets/by-hash/{digest}")) as r:
        assert r.status == 200
    async with api.post(v2.url("/api/v2/assets/from-hash"), json={"hash": digest, "file_path": "x.png"}) as r:
        assert r.status == 201
        minted = await r.json()
    assert minted["hash"] == digest and minted["id"] not in (first["id"],)
    async with api.post(v2.url("/api/v2/assets/from-hash"), json={"hash": "blake3:" + "1" * 64}) as r:
        assert r.status == 404
        envelope(await r.json(), "blob_not_found")
    async with api.get(v2.url(f"/api/v2/assets/{first['id']}")) as r:
        assert r.status == 200 and (await r.json())["id"] == first["id"]
    async with api.get(v2.url(f"/api/v2/assets/{first['id']}/content"), headers={"Range": "bytes=0-9"}) as r:
        assert r.status == 206 and await r.read() == data[:10]
        assert r.headers["Content-Range"] == f"bytes 0-9/{len(data)}"
    async with api.get(
        v2.url(f"/api/v2/assets/{first['id']}/content"), headers={"Range": f"bytes={len(data) + 10}-"}
    ) as r:
        assert r.status == 416
    async with api.get(v2.url("/api/v2/assets/asset_nope")) as r:
        assert r.status == 404
        envelope(await r.json(), "not_found")


async def test_upload_with_a_wrong_expected_hash_is_409_and_mints_nothing(v2, api):
    async with await upload(api, v2, b"abc", expected_hash="blake3:" + "2" * 64) as r:
        assert r.status == 409
        envelope(await r.json(), "hash_mismatch")


async def test_upload_idempotency(v2, api):
    key = {"Idempotency-Key": "up-1"}
    form = lambda data: _form(data)  # noqa: E731
    async with api.post(v2.url("/api/v2/assets"), data=form(b"one"), headers=key) as r:
        assert r.status == 201 and r.headers["Idempotency-Replayed"] == "false"
        first = await r.json()
    async with api.post(v2.url("/api/v2/assets"), data=form(b"one"), headers=key) as r:
        assert r.headers["Idempotency-Replayed"] == "true" and (await r.json())["id"] == first["id"]
    async with api.post(v2.url("/api/v2/assets"), data=form(b"two"), headers=key) as r:
        assert r.status == 422
        envelope(await r.json(), "idempotency_key_reuse")


async def test_upload_missing_fields_is_422(v2, api):
    f = aiohttp.FormData()
    f.add_field("file", b"x", filename="x.bin")
    async with api.post(v2.url("/api/v2/assets"), data=f) as r:
        assert r.status == 422
        envelope(await r.json(), "invalid_request")


def _form(data: bytes) -> aiohttp.FormData:
    f = aiohttp.FormData()
    f.add_field("content_type", "application/octet-stream")
    f.add_field("file_path", "data.bin")
    f.add_field("file", data, filename="data.bin")
    return f


async def test_a_file_comfyui_no_longer_has_is_skipped_not_waited_for(v2, api):
    """A temp preview is gone after ComfyUI restarts: fetching the outputs must not hang on it."""
    from comfy_jobs.comfy import ComfyUI

    async with api.post(v2.url("/api/v2/jobs"), json={"workflow": SMOKE}) as r:
        job = await v2.svc.ledger.get_job((await r.json())["id"])
    gone = {"images": [{"filename": "ComfyUI_temp_00001_.png", "subfolder": "", "type": "temp"}]}
    seen: set = set()
    await asyncio.wait_for(v2.svc.files.commit(ComfyUI(v2.settings.upstream, api), job, "7", gone, seen), 10)
    assert ("7", "ComfyUI_temp_00001_.png") in seen
    assert not [o for o in (await v2.svc.ledger.get_job(job.id)).outputs if o.node_id == "7"]


async def test_a_cross_site_cookie_write_is_refused_like_any_other(v2):
    """A browser session may use the v2 API from this host's pages, never from another site's."""
    from tests.support.proxy import PASSWORD

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.post(v2.url("/login"), json={"username": "admin", "password": PASSWORD}) as r:
            assert r.status == 200
        evil = {"Origin": "https://evil.example"}
        async with browser.post(v2.url("/api/v2/jobs"), json={"workflow": SMOKE}, headers=evil) as r:
            assert r.status == 403
            envelope(await r.json(), "forbidden")
        async with browser.post(
            v2.url("/api/v2/jobs"), json={"workflow": SMOKE}, headers={"Origin": v2.url()}
        ) as r:
            assert r.status == 201
    assert (
        len((await v2.svc.jobs(Caller("admin", is_admin=True), JobQuery(limit=10))).jobs) == 1
    )  # only the same-site job was recorded


async def test_many_jobs_and_streams_at_once_each_run_once(make_v2):
    stack = await make_v2(queue_limit=0)
    async with aiohttp.ClientSession(headers=stack.auth) as api:

        async def submit():
            async with api.post(stack.url("/api/v2/jobs"), json={"workflow": SMOKE}) as r:
                assert r.status == 201
                return await r.json()

        jobs = await asyncio.gather(*[submit() for _ in range(30)])

        async def stream(job):
            async with api.get(stack.url(job["urls"]["events"])) as r:
                return (await r.read()).decode()

        texts = await asyncio.wait_for(asyncio.gather(*[stream(j) for j in jobs[:10]]), 120)
        done = [await wait_job(api, stack, j["id"], timeout=120) for j in jobs]
    assert all('"status":"succeeded"' in t for t in texts)
    assert {d["status"] for d in done} == {"succeeded"} and all(len(d["outputs"]) == 1 for d in done)
    assert stack.up_state["counter"] == 30  # ComfyUI got each job once
