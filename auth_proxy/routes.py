"""Every route the proxy answers itself, in one place, and the relay to ComfyUI after them.

Each route runs behind the same middlewares (auth_proxy/app.py lists them in order:
normalise -> authenticate -> CSRF -> forced password change -> admins only). A route needs a
login unless this file says otherwise (the levels are auth_proxy/access.py's); so a route
added anywhere, by any module, is closed until someone opens it here on purpose, and a
route marked ADMIN answers members 403.

Adding routes (the v2 job API, say): write the handlers in their own module with a
`web.RouteTableDef` or a function that takes the router, and register them in
`add_routes` below, in the marked place, before the catch-all. They then get the gate's
`request[WHO]` (who is asking) and `request[NORM_PATH]`, and `request.config_dict[GATE]`
for the shared parts (settings, upstream client, metrics). Paths under /api/v2/ are the
job API's; everything not registered here is ComfyUI's and is relayed.
"""

from __future__ import annotations

from aiohttp import web

from auth_proxy import admin, models_sync, views
from auth_proxy.access import ACCESS, Access
from auth_proxy.relay import relay
from auth_proxy.services import JOBS
from auth_proxy.v2 import routes as v2


def add_routes(app: web.Application) -> None:
    router = app.router
    access: dict[web.AbstractResource, Access] = {}

    def add(path: str, methods: tuple[str, ...], handler, level: Access = Access.LOGIN) -> None:
        resource = router.add_resource(path)
        for method in methods:
            resource.add_route(method, handler)
        access[resource] = level

    get = ("GET", "HEAD")
    add("/healthz", get, views.healthz, Access.OPEN)
    add("/readyz", get, views.readyz, Access.OPEN)
    add("/_auth/login.css", get, views.login_css, Access.OPEN)
    add("/favicon.ico", get, views.favicon, Access.OPEN)
    add("/login", ("GET", "POST"), views.login, Access.OPEN)
    add("/logout", ("POST",), views.logout, Access.ANYONE)
    add("/_auth/password", ("GET", "POST"), views.password, Access.BEFORE_CHANGE)
    add("/_auth/session", get, views.session, Access.BEFORE_CHANGE)
    add("/metrics", get, views.metrics, Access.ADMIN)
    add("/_auth/account", ("GET", "HEAD", "POST"), admin.account)  # each person's own tokens
    add("/_auth/admin", ("GET", "HEAD", "POST"), admin.people, Access.ADMIN)  # people, tokens, audit log

    # Own APIs go here, each behind the login by default.
    if JOBS in app:  # the Comfy API v2 over the job service (auth_proxy/v2/routes.py)
        v2.add_routes(add, app[JOBS])
    models_sync.add_routes(app, add)  # the admins' "sync models now" (auth_proxy/models_sync.py)

    # Last: everything else is ComfyUI's, relayed with the path as the client sent it (the
    # v2 prefixes are the job API's, whose 404 and 405 are aiohttp's router's).
    router.add_route("*", "/{tail:" + v2.RELAYED + "}", relay)
    app[ACCESS] = access
