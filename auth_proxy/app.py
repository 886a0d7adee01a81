"""The aiohttp application: the gate as a pipeline of middlewares in front of every route.

A request passes, in this fixed order (auth_proxy/middlewares.py):

1. hide errors: count the request for /metrics; a failure is a 500 without a traceback
   (and on the v2 API's paths, every refusal below is put in the contract's envelope);
2. normalise: the percent-decoded path with dot segments resolved, which every later
   decision is made on (the relay still sends ComfyUI the path as the client sent it);
3. authenticate: who is asking (session cookie, HTTP Basic, Bearer token, or `?token=`
   on the WebSocket only), unless the route is open (auth_proxy/routes.py says which);
4. CSRF: cookie-authenticated writes and WebSockets must come from a page of this host;
5. forced change: while an account's password is the default or one the admin set, only
   changing it is allowed;
6. admin only: the gate's routes marked ADMIN (people, metrics, model sync) and ComfyUI's
   that only an admin reaches (auth_proxy/access.py: ComfyUI-Manager, /free, the logs)
   answer 403 to a member.

Then the route: one of the proxy's own (auth_proxy/routes.py lists them all, and mounts
the v2 job API's table from auth_proxy/v2/routes.py) or the catch-all relay to ComfyUI. Because
middlewares wrap every route of the application, a route added later cannot skip the gate.
"""

from __future__ import annotations

from aiohttp import web

from auth_proxy import native, own_files
from auth_proxy.middlewares import PIPELINE
from auth_proxy.pinning import PINNING, Pinning
from auth_proxy.replies import SERVER_NAME
from auth_proxy.routes import add_routes
from auth_proxy.services import ARRIVAL, GATE, JOBS, NORM_PATH, WHO, Gate, Who
from auth_proxy.settings import Settings
from comfy_jobs.service import JobsService

__all__ = ["ARRIVAL", "GATE", "JOBS", "NORM_PATH", "WHO", "Gate", "Who", "create_app"]


def limit_for(gate: Gate):
    """The waiting jobs an account may have, as the admin set it (`user limit`), or None for
    the server's COMFY_JOBS_MAX_WAITING_PER_USER."""

    def limit(user: str) -> int | None:
        account = gate.accounts.account(user)
        return account.max_waiting if account is not None else None

    return limit


def create_app(settings: Settings) -> web.Application:
    gate = Gate(settings)
    # The limit applies only to bodies the proxy reads itself (login and password forms);
    # relayed bodies are streamed to ComfyUI from request.content and are not limited.
    app = web.Application(middlewares=PIPELINE, client_max_size=1 << 20)
    app[GATE] = gate
    own_files.install(app, gate)  # each person's files their own (auth_proxy/own_files.py)
    native.install(app, gate)  # ComfyUI's native API, each person's own (auth_proxy/native.py)
    # The Comfy API v2's job service (routes.py mounts its routes), and on one box the worker
    # that runs its jobs on this proxy's ComfyUI; a cluster's gateway runs none and relays
    # each browser's UI to the worker its session is pinned to.
    jobs = JobsService(settings.jobs, settings.upstream, limit_for(gate)) if settings.jobs else None
    if jobs is not None:
        app[JOBS] = jobs
        if settings.gateway:
            app[PINNING] = Pinning(jobs)

    async def lifetime(_app):
        await gate.start()
        if jobs is not None:
            await jobs.start()
            if jobs.s.run_worker:
                jobs.start_worker()
        yield
        if jobs is not None:
            await jobs.stop()
        await gate.stop()

    async def own_headers(_request: web.Request, resp: web.StreamResponse) -> None:
        # aiohttp (and ComfyUI, relayed) would name their versions here.
        resp.headers["Server"] = SERVER_NAME
        if "Cache-Control" not in resp.headers:
            # What the gate answers itself (pages, sessions, refusals) is kept by no cache
            # (what it relays has its own policy: auth_proxy/relay.py).
            resp.headers["Cache-Control"] = "no-store"

    app.cleanup_ctx.append(lifetime)
    app.on_response_prepare.append(own_headers)
    add_routes(app)
    return app
