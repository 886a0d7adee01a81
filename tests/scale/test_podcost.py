"""A worker marks its own pod cheap to delete while idle, dear while busy: one merge-patch
of controller.kubernetes.io/pod-deletion-cost through the API server (here a stand-in that
checks what the real one checks: the path, the bearer token, the patch type)."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from comfy_jobs.podcost import ANNOTATION, PodCost, PodRef

PATCHES = web.AppKey("patches", list)


def api_server() -> web.Application:
    app = web.Application()
    app[PATCHES] = []

    async def patch(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer sa-token":
            return web.json_response({"kind": "Status", "code": 401}, status=401)
        if request.content_type != "application/merge-patch+json":
            return web.json_response({"kind": "Status", "code": 415}, status=415)
        request.app[PATCHES].append(
            (request.match_info["ns"], request.match_info["pod"], await request.json())
        )
        return web.json_response({"kind": "Pod"})

    app.router.add_patch("/api/v1/namespaces/{ns}/pods/{pod}", patch)
    return app


async def test_idle_and_busy_set_the_pod_deletion_cost_once_each(aiohttp_server, tmp_path):
    server = await aiohttp_server(api_server())
    (tmp_path / "token").write_text("sa-token\n")
    pod = PodRef(
        str(server.make_url("")).rstrip("/"), "comfy-stack", "comfy-worker-abc", tmp_path / "token", None
    )
    async with aiohttp.ClientSession() as session:
        cost = PodCost(pod, session)
        await cost.set(busy=False)
        await cost.set(busy=False)  # unchanged: no request
        await cost.set(busy=True)
        await cost.set(busy=False)
    values = [
        (ns, name, body["metadata"]["annotations"][ANNOTATION]) for ns, name, body in server.app[PATCHES]
    ]
    assert values == [
        ("comfy-stack", "comfy-worker-abc", "-1000"),
        ("comfy-stack", "comfy-worker-abc", "1000"),
        ("comfy-stack", "comfy-worker-abc", "-1000"),
    ]


async def test_a_refused_patch_is_logged_and_retried_at_the_next_change(aiohttp_server, tmp_path, caplog):
    server = await aiohttp_server(api_server())
    (tmp_path / "token").write_text("wrong")
    pod = PodRef(str(server.make_url("")).rstrip("/"), "ns", "p", tmp_path / "token", None)
    async with aiohttp.ClientSession() as session:
        cost = PodCost(pod, session)
        await cost.set(busy=True)
        assert cost.current is None and "401" in caplog.text
        (tmp_path / "token").write_text("sa-token")  # the kubelet rotated it
        await cost.set(busy=True)
    assert len(server.app[PATCHES]) == 1
