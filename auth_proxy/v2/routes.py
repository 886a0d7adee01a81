"""The v2 routes, in one table, registered with auth_proxy/routes.py's `add` (behind the
gate like every route). aiohttp's own router matches them: a v2 path no route takes is its
404, a method a path does not allow its 405 with Allow; the relay's catch-all leaves these
prefixes alone (`RELAYED`), so neither ever reaches ComfyUI."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from auth_proxy.v2.assets import AssetRoutes
from auth_proxy.v2.jobs import JobRoutes
from auth_proxy.v2.wire import handler
from comfy_jobs.service import JobsService

# /api/v2/userdata and other /api/v2 paths are ComfyUI's own and are relayed to it.
OWN = ("/api/v2/jobs", "/api/v2/assets")
# The catch-all's pattern for the path after its first slash: anything but the paths above.
RELAYED = r"(?!api/v2/(?:jobs|assets)(?:/|$)).*"  # like aiohttp's own {tail:.*}: no line breaks
# An asset id is any segment but the literal routes' (GET /api/v2/assets/from-hash is a 405,
# not the asset "from-hash").
ASSET_ID = r"{id:(?!(?:from-hash|by-hash)$)[^/]+}"

Add = Callable[[str, tuple[str, ...], Callable[[web.Request], Awaitable[web.StreamResponse]]], None]


def owns(norm: str) -> bool:
    return any(norm == p or norm.startswith(p + "/") for p in OWN)


def add_routes(add: Add, service: JobsService) -> None:
    jobs, assets = JobRoutes(service), AssetRoutes(service)
    table: list[tuple[str, str, Callable[..., Awaitable[web.StreamResponse]]]] = [
        ("POST", "/api/v2/jobs", jobs.submit),
        ("GET", "/api/v2/jobs", jobs.list),
        ("GET", "/api/v2/jobs/{id}", jobs.get),
        ("GET", "/api/v2/jobs/{id}/events", jobs.events),
        ("POST", "/api/v2/jobs/{id}/cancel", jobs.cancel),
        ("GET", "/api/v2/jobs/{id}/workflow", jobs.workflow),
        ("POST", "/api/v2/assets", assets.upload),
        ("POST", "/api/v2/assets/from-hash", assets.from_hash),
        ("HEAD", "/api/v2/assets/by-hash/{hash}", assets.head_by_hash),
        ("GET", f"/api/v2/assets/{ASSET_ID}", assets.get),
        ("GET", f"/api/v2/assets/{ASSET_ID}/content", assets.content),
    ]
    for method, path, fn in table:
        # consecutive paths share one aiohttp resource, so its 405 lists all their methods
        add(path, (method, "HEAD") if method == "GET" else (method,), handler(fn))
