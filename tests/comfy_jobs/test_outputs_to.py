"""COMFY_OUTPUTS_TO=s3://bucket/prefix against a real S3 server (moto's server mode, as the
model_sync suites use) and oss://... through the suite's OSS adapter in front of it: outputs
are uploaded, verified and recorded, and served back from there once the local copy is gone."""

from __future__ import annotations

import uuid

import aiohttp
import pytest
from blake3 import blake3

from model_sync.settings import Storage
from tests.comfy_jobs.conftest import SMOKE, wait_job
from tests.support.oss_adapter import ACCESS_KEY_ID, OSSAdapter
from tests.support.s3_server import start_moto


@pytest.fixture(scope="module")
def s3():
    server = start_moto()
    yield server
    server.stop()


async def s3_stack(s3, make_v2, monkeypatch, prefix: str):
    for k, v in s3.env().items():  # the key pair, which boto3 reads itself
        monkeypatch.setenv(k, v)
    bucket = f"out-{uuid.uuid4().hex[:10]}"
    s3.client().create_bucket(Bucket=bucket)
    return bucket, await make_v2(outputs_to=f"s3://{bucket}/{prefix}", storage=Storage(s3_endpoint=s3.url))


async def one_output(api, stack) -> dict:
    async with api.post(stack.url("/api/v2/jobs"), json={"workflow": SMOKE}) as r:
        job = await r.json()
    [out] = (await wait_job(api, stack, job["id"]))["outputs"]
    return out


async def test_outputs_are_uploaded_verified_and_served_from_object_storage(s3, make_v2, monkeypatch):
    bucket, stack = await s3_stack(s3, make_v2, monkeypatch, "comfy/outputs")
    async with aiohttp.ClientSession(headers=stack.auth) as api:
        out = await one_output(api, stack)
        hexd = out["hash"].removeprefix("blake3:")
        stored = s3.client().get_object(Bucket=bucket, Key=f"comfy/outputs/{hexd[:2]}/{hexd}")["Body"].read()
        assert "blake3:" + blake3(stored).hexdigest() == out["hash"]
        asset = await stack.svc.ledger.get_asset(out["id"])
        assert asset.remote_uri == f"s3://{bucket}/comfy/outputs/{hexd[:2]}/{hexd}"
        local = stack.svc.blobs.path(out["hash"])
        local.unlink()  # the data volume lost it: the object store still has it
        async with api.get(out["url"]) as r:
            assert r.status == 200 and await r.read() == stored
        assert local.is_file()  # fetched back, verified, and kept again
        async with api.head(stack.url(f"/api/v2/assets/by-hash/{out['hash']}")) as r:
            assert r.status == 200


async def test_a_corrupted_remote_copy_is_not_served(s3, make_v2, monkeypatch):
    for k, v in s3.env().items():  # the key pair, which boto3 reads itself
        monkeypatch.setenv(k, v)
    bucket = f"out-{uuid.uuid4().hex[:10]}"
    s3.client().create_bucket(Bucket=bucket)
    stack = await make_v2(outputs_to=f"s3://{bucket}/o", storage=Storage(s3_endpoint=s3.url))
    async with aiohttp.ClientSession(headers=stack.auth) as api:
        async with api.post(stack.url("/api/v2/jobs"), json={"workflow": SMOKE}) as r:
            job = await r.json()
        [out] = (await wait_job(api, stack, job["id"]))["outputs"]
        hexd = out["hash"].removeprefix("blake3:")
        s3.client().put_object(Bucket=bucket, Key=f"o/{hexd[:2]}/{hexd}", Body=b"tampered")
        stack.svc.blobs.path(out["hash"]).unlink()
        async with api.get(out["url"]) as r:
            assert r.status == 404 and "failed verification" in (await r.json())["error"]["message"]
        assert not stack.svc.blobs.path(out["hash"]).exists()


async def test_outputs_to_oss(s3, make_v2):
    adapter = OSSAdapter(s3.client()).start()
    try:
        bucket = f"oss-{uuid.uuid4().hex[:10]}"
        s3.client().create_bucket(Bucket=bucket)
        storage = Storage(
            oss_endpoint=adapter.url, oss_access_key_id=ACCESS_KEY_ID, oss_access_key_secret="oss-test-secret"
        )
        stack = await make_v2(outputs_to=f"oss://{bucket}/renders", storage=storage)
        async with aiohttp.ClientSession(headers=stack.auth) as api:
            out = await one_output(api, stack)
            hexd = out["hash"].removeprefix("blake3:")
            stored = s3.client().get_object(Bucket=bucket, Key=f"renders/{hexd[:2]}/{hexd}")["Body"].read()
            assert "blake3:" + blake3(stored).hexdigest() == out["hash"]
            stack.svc.blobs.path(out["hash"]).unlink()
            async with api.get(out["url"]) as r:
                assert r.status == 200 and await r.read() == stored
    finally:
        adapter.stop()
