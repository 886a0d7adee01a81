"""The Comfy API v2 on the proxy's port: its routes in one table, behind the same login as
everything else, and the job service they use (comfy_jobs).

`register(app, settings)` is the one hook app.py calls: it adds the service's start and stop
to the app, and a middleware that answers the gate's refusals of v2 paths in the contract's
error envelope. The gate calls `dispatch` for an authenticated request before relaying it.
"""
from __future__ import annotations

import json
import logging

from aiohttp import web

from auth_proxy.v2_assets import AssetRoutes
from auth_proxy.v2_common import CODES, ApiError, Routes, error
from auth_proxy.v2_jobs import JobRoutes
from comfy_jobs.service import JobsService

log = logging.getLogger(__name__)
# /api/v2/userdata and other /api/v2 paths are ComfyUI's own and are relayed to it.
OWN = ("/api/v2/jobs", "/api/v2/assets")


def owns(norm: str) -> bool:
    return any(norm == p or norm.startswith(p + "/") for p in OWN)


class V2:
    def __init__(self, service: JobsService):
        self.svc = service
        jobs, assets = JobRoutes(service), AssetRoutes(service)
        self.routes = Routes([
            ("POST", "/api/v2/jobs", jobs.submit),
            ("GET", "/api/v2/jobs", jobs.list),
            ("GET", "/api/v2/jobs/{id}", jobs.get),
            ("GET", "/api/v2/jobs/{id}/events", jobs.events),
            ("POST", "/api/v2/jobs/{id}/cancel", jobs.cancel),
            ("GET", "/api/v2/jobs/{id}/workflow", jobs.workflow),
            ("POST", "/api/v2/assets", assets.upload),
            ("POST", "/api/v2/assets/from-hash", assets.from_hash),
            ("HEAD", "/api/v2/assets/by-hash/{hash}", assets.head_by_hash),
            ("GET", "/api/v2/assets/{id}", assets.get),
            ("GET", "/api/v2/assets/{id}/content", assets.content),
        ])

    async def dispatch(self, request: web.Request, norm: str) -> web.StreamResponse | None:
        """The v2 answer for an authenticated request, or None for a path that is ComfyUI's."""
        if not owns(norm):
            return None
        found = self.routes.match(request.method, norm)
        if found is None:
            return error(404, "not_found", f"no v2 route {norm}")
        handler, params = found
        if handler == "405":
            allowed = set(params) | ({"HEAD"} if "GET" in params else set())
            return error(405, "method_not_allowed", f"{request.method} is not allowed on {norm}",
                         Allow=", ".join(sorted(allowed)))
        try:
            return await handler(request, **params)
        except ApiError as exc:
            return exc.response()

    async def not_ready(self) -> str | None:
        """Why v2 cannot take jobs now (for /readyz), or None."""
        try:
            await self.svc.ledger.counts()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return f"the job ledger is not answering ({type(exc).__name__})"
        worker = self.svc.worker
        if worker is not None and worker.task is not None and worker.task.done():
            return "the job worker stopped; see the proxy's log"
        return None

    async def metrics_text(self) -> str:
        try:
            counts = await self.svc.ledger.counts()
        except Exception:  # noqa: BLE001 - the gauges are left out rather than wrong
            counts = None
        return self.svc.metrics.render(counts, self.svc.mirror_failures())


V2_KEY = web.AppKey("v2", V2)


@web.middleware
async def v2_envelope(request: web.Request, handler):
    """The gate answers `{"error": "text"}`; on v2 paths the contract wants
    `{"error": {"code", "message"}}` (401 unauthorized, 403 forbidden, ...)."""
    try:
        resp = await handler(request)
    except web.HTTPException as exc:  # aiohttp's own 404/405 (a path no route matched)
        if not owns(request.path) or exc.status < 400:
            raise
        return error(exc.status, CODES.get(exc.status, "error"), exc.reason)
    if resp.status >= 400 and owns(request.path) and isinstance(resp, web.Response) and resp.body is not None:
        try:
            body = json.loads(resp.body)
        except (ValueError, TypeError):
            return resp
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            headers = {k: v for k, v in resp.headers.items() if k.lower() in ("retry-after", "www-authenticate")}
            return error(resp.status, CODES.get(resp.status, "error"), body["error"], **headers)
    return resp


def register(app: web.Application, settings) -> None:
    """Serve the v2 API when the settings carry job settings (the default program does)."""
    if getattr(settings, "jobs", None) is None:
        return
    v2 = V2(JobsService(settings.jobs, settings.upstream))
    app[V2_KEY] = v2
    app.middlewares.append(v2_envelope)

    async def lifecycle(_app):
        await v2.svc.start()
        yield
        await v2.svc.stop()

    app.cleanup_ctx.append(lifecycle)
