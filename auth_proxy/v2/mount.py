"""The Comfy API v2 on the proxy's port: its routes in one table, behind the same gate as
everything else (auth_proxy/routes.py registers them through `add_routes`), and the job
service they use (comfy_jobs).

Besides the routes, `add_routes` adds the service's start and stop to the app, a fallback
per v2 prefix (the contract's 404 and 405, never a relay to ComfyUI), and a middleware
right inside the gate's error counter that answers the gate's own refusals of v2 paths
(401, 403, 429) in the contract's error envelope.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from auth_proxy.gate import GATE, NORM_PATH
from auth_proxy.pinning import Pinning, Target
from auth_proxy.v2.assets import AssetRoutes
from auth_proxy.v2.jobs import JobRoutes
from auth_proxy.v2.wire import CODES, error, handler
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
        self.table: list[tuple[str, str, Callable[..., Any]]] = [
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
        ]
        self.routes = Routes(self.table)
        # A gateway: no worker here and the ledger shared with workers elsewhere; the UI is
        # relayed to the worker each browser session is pinned to (auth_proxy/pinning.py).
        self.gateway = not service.s.run_worker and bool(service.s.database_url)
        self.pinning = Pinning(service)

    async def fallback(self, request: web.Request) -> web.Response:
        """A v2 path or method no route takes: 404, or 405 with what the path allows."""
        norm = request.get(NORM_PATH, request.path)
        found = self.routes.match(request.method, norm)
        if found is None or found[0] != "405":
            return error(404, "not_found", f"no v2 route {request.method} {norm}")
        allowed = set(found[1]) | ({"HEAD"} if "GET" in found[1] else set())
        return error(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed on {norm}",
            None,
            Allow=", ".join(sorted(allowed)),
        )

    async def not_ready(self) -> str | None:
        return await self.svc.not_ready()

    async def metrics_text(self) -> str:
        return await self.svc.metrics_text()


V2_KEY = web.AppKey("v2", V2)


def is_gateway(request: web.Request) -> bool:
    v2 = request.config_dict.get(V2_KEY)
    return bool(v2 and v2.gateway)


async def ui_target(request: web.Request) -> Target | None:
    """On a gateway: the worker this request's session is pinned to (None: no worker is up)."""
    return await request.config_dict[V2_KEY].pinning.target(request)


async def not_ready(request: web.Request) -> str | None:
    """Why the v2 API cannot take jobs now (for /readyz), or None."""
    v2 = request.config_dict.get(V2_KEY)
    return await v2.not_ready() if v2 else None


async def metrics_text(request: web.Request) -> str:
    v2 = request.config_dict.get(V2_KEY)
    return await v2.metrics_text() if v2 else ""


@web.middleware
async def v2_envelope(request: web.Request, handler):
    """The gate answers `{"error": "text"}`; on v2 paths the contract wants
    `{"error": {"code", "message"}}` (401 unauthorized, 403 forbidden, ...)."""
    try:
        resp = await handler(request)
    except web.HTTPException as exc:  # aiohttp's own 404 (a path no route's pattern takes)
        if exc.status < 400 or not owns(request.path):
            raise
        return error(exc.status, CODES.get(exc.status, "error"), exc.reason)
    if (
        resp.status >= 400
        and owns(request.path)
        and isinstance(resp, web.Response)
        and isinstance(resp.body, (bytes, bytearray))
    ):
        try:
            body = json.loads(resp.body)
        except (ValueError, TypeError):
            return resp
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            headers = {
                k: v for k, v in resp.headers.items() if k.lower() in ("retry-after", "www-authenticate")
            }
            return error(resp.status, CODES.get(resp.status, "error"), body["error"], None, **headers)
    return resp


def add_routes(app: web.Application, add) -> None:
    """Register the v2 routes with routes.py's `add(path, methods, handler)`, when the
    settings carry job settings (the program's always do; tests may leave them out)."""
    jobs = app[GATE].s.jobs
    if jobs is None:
        return
    v2 = V2(JobsService(jobs, app[GATE].s.upstream))
    app[V2_KEY] = v2
    for method, path, fn in v2.table:
        add(path, (method, "HEAD") if method == "GET" else (method,), handler(fn))
    for prefix in OWN:
        add(prefix + r"{tail:(/[\s\S]*)?}", ("*",), v2.fallback)
    # Inside the error counter, outside authentication: it sees every refusal of the gate.
    names = [getattr(m, "__name__", "") for m in app.middlewares]
    app.middlewares.insert(names.index("count_and_hide_errors") + 1, v2_envelope)

    async def lifecycle(_app):
        await v2.svc.start()
        if jobs.run_worker:
            v2.svc.start_worker()
        yield
        await v2.svc.stop()

    app.cleanup_ctx.append(lifecycle)


class Routes:
    """A route table `(method, "/api/v2/x/{name}", handler)` matched on the normalised path."""

    def __init__(self, table: Sequence[tuple[str, str, Callable]]):
        self.table = [
            (
                m,
                p.count("{"),
                re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(p)) + r"\Z"),
                h,
            )
            for m, p, h in table
        ]

    def match(self, method: str, path: str):
        found = []
        for m, n, rx, h in self.table:
            hit = rx.match(path)
            if hit is not None:
                found.append((n, m, hit, h))
        if not found:
            return None
        fewest = min(f[0] for f in found)
        found = [f for f in found if f[0] == fewest]
        for _, m, hit, h in found:
            if m == method or (method == "HEAD" and m == "GET"):
                return h, hit.groupdict()
        return "405", [f[1] for f in found]
