"""Every route the proxy answers itself, in one place, and the relay to ComfyUI after them.

Each route runs behind the same middlewares (auth_proxy/app.py lists them in order:
normalise -> authenticate -> CSRF -> forced password change -> admin only). A route needs a
login unless this file says otherwise in `ACCESS`; so a route added anywhere, by any module,
is closed until someone opens it here on purpose. What only the admin may reach is said
here too: `Access.ADMIN` for the gate's own routes, `ADMIN_RELAYED` for ComfyUI's.

Adding routes (the v2 job API, say): write the handlers in their own module with a
`web.RouteTableDef` or a function that takes the router, and register them in
`add_routes` below, in the marked place, before the catch-all. They then get the gate's
`request[WHO]` (who is asking) and `request[NORM_PATH]`, and `request.config_dict[GATE]`
for the shared parts (settings, upstream client, metrics). Paths under /api/v2/ are the
job API's; everything not registered here is ComfyUI's and is relayed.
"""

from __future__ import annotations

import enum
import re
from functools import partial

from aiohttp import web

from auth_proxy import models_sync, views
from auth_proxy.relay import relay
from auth_proxy.services import JOBS, NORM_PATH
from auth_proxy.v2 import routes as v2


class Access(enum.Enum):
    OPEN = "open"  # no credentials looked at: health, the login page and its stylesheet
    ANYONE = "anyone"  # credentials read when sent, not required: logout
    BEFORE_CHANGE = "before-change"  # login required, but open while the default password must change
    LOGIN = "login"  # the default for every route: login required, after the forced change
    ADMIN = "admin"  # as LOGIN, and the account must be an admin (members get 403)


# Relayed routes only the admin reaches (the gate's own say Access.ADMIN where they are added):
# - ComfyUI-Manager, every route (its pinned manager_server.py and share routes: /manager/,
#   /customnode/, /externalmodel/, /snapshot/, /comfyui_manager/; newer releases put them
#   under /v2/): it installs and removes code that runs in ComfyUI, restarts it, switches
#   its version, and reads or writes the sharing services' credentials;
# - POST /free: unloads every model once the running prompt ends, so another person's
#   next run loads its weights again (minutes for a video model);
# - /internal/logs: ComfyUI's log names every person's prompts, errors and files.
ADMIN_RELAYED = re.compile(
    r"^(?:/api)?(?:/v2)?/(?:manager|customnode|externalmodel|snapshot|comfyui_manager)(?:/|$)"
    r"|^(?:/api)?/(?:free|internal/logs)(?:/|$)",
    re.IGNORECASE,
)
# Of those, what changes the nodes installed (ComfyUI-Manager's queue of installs, updates
# and removals, its direct installs, a snapshot restored, ComfyUI's version switched): each
# is written in the audit log.
NODE_CHANGES = re.compile(
    r"^(?:/api)?(?:/v2)?/(?:manager/queue/(?:install|update|update_all|update_comfyui|reinstall"
    r"|uninstall|disable|fix|install_model|start)|customnode/install/.*|snapshot/restore"
    r"|comfyui_manager/comfyui_switch_version)$",
    re.IGNORECASE,
)


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
    add("/metrics", get, views.metrics, Access.ADMIN)

    # Own APIs go here, each behind the login by default.
    if JOBS in app:  # the Comfy API v2 over the job service (auth_proxy/v2/routes.py)
        v2.add_routes(add, app[JOBS])
    # the admin's "sync models now" (auth_proxy/models_sync.py)
    models_sync.add_routes(app, partial(add, level=Access.ADMIN))

    # Last: everything else is ComfyUI's, relayed with the path as the client sent it (the
    # v2 prefixes are the job API's, whose 404 and 405 are aiohttp's router's).
    router.add_route("*", "/{tail:" + v2.RELAYED + "}", relay)
    app[ACCESS] = access


def access_of(request: web.Request) -> Access:
    level = request.config_dict.get(ACCESS, {}).get(request.match_info.route.resource, Access.LOGIN)
    if level is Access.LOGIN and ADMIN_RELAYED.match(request.get(NORM_PATH, "")):
        return Access.ADMIN
    return level


def is_open_path(request: web.Request, norm: str) -> bool:
    """`norm` names one of the routes open without a login (a page not worth returning to)."""
    return any(
        resource.canonical == norm and level is Access.OPEN
        for resource, level in request.config_dict.get(ACCESS, {}).items()
    )
