"""The v2 routes as aiohttp's router answers them: a method a path does not take is 405
with Allow, a v2 path no route takes is 404, both in the contract's envelope and neither
relayed to ComfyUI; the gate's login still comes first."""

from __future__ import annotations

import aiohttp
import pytest


@pytest.mark.parametrize(
    "method,path,allowed",
    [
        ("POST", "/api/v2/jobs/job_x", {"GET", "HEAD"}),
        ("DELETE", "/api/v2/jobs", {"GET", "HEAD", "POST"}),
        ("GET", "/api/v2/jobs/job_x/cancel", {"POST"}),
        ("GET", "/api/v2/assets/from-hash", {"POST"}),
        ("PUT", "/api/v2/assets/asset_x/content", {"GET", "HEAD"}),
        ("GET", "/api/v2/assets/by-hash/blake3:00", {"HEAD"}),
    ],
)
async def test_a_method_the_path_does_not_take_is_405_with_allow(v2, api, method, path, allowed):
    async with api.request(method, v2.url(path)) as r:
        body = await r.json()
        assert r.status == 405, body
        assert {m.strip() for m in r.headers["Allow"].split(",")} == allowed
        assert body["error"]["code"] == "method_not_allowed"
    assert v2.up_state["counter"] == 0  # nothing reached ComfyUI


@pytest.mark.parametrize("path", ["/api/v2/jobs/job_x/nope", "/api/v2/jobs/", "/api/v2/assets/a/b/c"])
async def test_a_v2_path_no_route_takes_is_404(v2, api, path):
    async with api.post(v2.url(path)) as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"


async def test_the_login_comes_before_the_405(v2):
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.post(v2.url("/api/v2/jobs/job_x")) as r:
            assert r.status == 401 and (await r.json())["error"]["code"] == "unauthorized"
