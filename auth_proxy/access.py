"""Who may reach a route: the levels auth_proxy/routes.py gives each of the gate's own
routes (a route it names no level for needs a login), and the relayed routes of ComfyUI's
that only an admin reaches; read by the middlewares."""

from __future__ import annotations

import enum
import re

from aiohttp import web

from auth_proxy.services import NORM_PATH


class Access(enum.Enum):
    OPEN = "open"  # no credentials looked at: health, the login page and its stylesheet
    ANYONE = "anyone"  # credentials read when sent, not required: logout
    BEFORE_CHANGE = "before-change"  # login required, but open while the password must change
    LOGIN = "login"  # the default for every route: login required, after the forced change
    ADMIN = "admin"  # as LOGIN, and the account's role must be admin


# Relayed routes only an admin reaches (the gate's own say Access.ADMIN where they are added):
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
