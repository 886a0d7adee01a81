"""Every route the proxy answers itself, in one place, and the relay to ComfyUI after them.

Each route runs behind the same middlewares (auth_proxy/app.py lists them in order:
normalise -> authenticate -> CSRF -> forced password change). A route needs a login unless
this file says otherwise in `ACCESS`; so a route added anywhere, by any module, is closed
until someone opens it here on purpose.

Adding routes (the v2 job API, say): write the handlers in their own module with a
`web.RouteTableDef` or a function that takes the router, and register them in
`add_routes` below, in the marked place, before the catch-all. They then get the gate's
`request[WHO]` (who is asking) and `request[NORM_PATH]`, and `request.config_dict[GATE]`
for the shared parts (settings, upstream client, metrics). Paths under /api/v2/ are the
job API's; everything not registered here is ComfyUI's and is relayed.
"""

from __future__ import annotations

import enum

from aiohttp import web

from auth_proxy import models_sync, views
from auth_proxy.relay import relay
from auth_proxy.services import JOBS
from auth_proxy.v2 import routes as v2


class Access(enum.Enum):
    OPEN = "open"  # no credentials looked at: health, the login page and its stylesheet
    ANYONE = "anyone"  # credentials read when sent, not required: logout
    BEFORE_CHANGE = "before-change"  # login required, but open while the default password must change
    LOGIN = "login"  # the default for every route: login required, after the forced change


ACCESS = web.AppKey("access", dict)


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
    add("/metrics", get, views.metrics)

    # Own APIs go here, each behind the login by default.
    if JOBS in app:  # the Comfy API v2 over the job service (auth_proxy/v2/routes.py)
        v2.add_routes(add, app[JOBS])
    models_sync.add_routes(app, add)  # the admin's "sync models now" (auth_proxy/models_sync.py)

    # Last: everything else is ComfyUI's, relayed with the path as the client sent it (the
    # v2 prefixes are the job API's, whose 404 and 405 are aiohttp's router's).
    router.add_route("*", "/{tail:" + v2.RELAYED + "}", relay)
    app[ACCESS] = access


def access_of(request: web.Request) -> Access:
    return request.config_dict.get(ACCESS, {}).get(request.match_info.route.resource, Access.LOGIN)


def is_open_path(request: web.Request, norm: str) -> bool:
    """`norm` names one of the routes open without a login (a page not worth returning to)."""
    return any(
        resource.canonical == norm and level is Access.OPEN
        for resource, level in request.config_dict.get(ACCESS, {}).items()
    )
