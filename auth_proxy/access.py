"""Who may reach a route: the levels auth_proxy/routes.py gives each of the gate's own
routes (a route it names no level for needs a login), read by the middlewares."""

from __future__ import annotations

import enum

from aiohttp import web


class Access(enum.Enum):
    OPEN = "open"  # no credentials looked at: health, the login page and its stylesheet
    ANYONE = "anyone"  # credentials read when sent, not required: logout
    BEFORE_CHANGE = "before-change"  # login required, but open while the password must change
    LOGIN = "login"  # the default for every route: login required, after the forced change
    ADMIN = "admin"  # as LOGIN, and the account's role must be admin


ACCESS = web.AppKey("access", dict)


def access_of(request: web.Request) -> Access:
    return request.config_dict.get(ACCESS, {}).get(request.match_info.route.resource, Access.LOGIN)


def is_open_path(request: web.Request, norm: str) -> bool:
    """`norm` names one of the routes open without a login (a page not worth returning to)."""
    return any(
        resource.canonical == norm and level is Access.OPEN
        for resource, level in request.config_dict.get(ACCESS, {}).items()
    )
