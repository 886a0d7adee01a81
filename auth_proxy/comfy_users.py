"""Each account's workflows and settings through ComfyUI's `--multi-user` mode.

ComfyUI picks whose user folder a request reads from the `Comfy-User` header, and knows only
the users in `<user dir>/users.json` (app/user_manager.py: loaded at its start, extended by
`POST /users`; an unknown user is a KeyError, a 500). The gate sets that header on every
request it relays, from the login (a client's own is dropped: relay.CLAIMS), and makes
each account's ComfyUI user on the account's first request with ComfyUI's own `POST /users`,
so a new account works without restarting ComfyUI. The user is found again by its name
(`GET /users` lists id -> name), so nothing is stored on the gate's side, and each ComfyUI
of a cluster has its own.

The name is the account's owner key (its name and creation time, auth_proxy/ownership.py):
an account deleted and later made again under the same name is another person, who starts
with no files.

COMFY_ADMIN_USER keeps ComfyUI's `default` user (its folder holds the workflows and settings
of an installation from before accounts); comfyctl serve puts `default` in users.json
before ComfyUI starts (comfyctl/comfy_users.py), since `POST /users` cannot make that id.

The front end asks `GET /users` to decide whether to show its user-selection screen (it
does when the answer lists `users`); the gate answers ComfyUI's single-user shape, since
the login already says who this is, and refuses `POST /users` (the admin adds accounts).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from aiohttp import web

from auth_proxy.accounts import Accounts
from auth_proxy.ownership import owner_key
from auth_proxy.replies import error
from auth_proxy.services import Who
from comfy_jobs.comfy import ComfyUI

log = logging.getLogger(__name__)
DEFAULT_USER = "default"  # app/user_manager.py default_user
HEADER = "Comfy-User"
COMFY_USER = web.RequestKey("comfy_user", str)  # this request's ComfyUI user, set by native.handle


class ComfyUsers:
    def __init__(self, comfy: ComfyUI, accounts: Accounts, admin_user: str):
        self.comfy = comfy
        self.accounts = accounts
        self.admin_user = admin_user
        self._ids: dict[str, str] = {}  # ComfyUI user name -> its id
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.multi_user: bool | None = None  # None: not asked yet

    async def user_id(self, who: Who) -> str | None:
        """The `Comfy-User` for `who`; None when ComfyUI runs without --multi-user (then
        every account shares the default user's files)."""
        if who.user == self.admin_user:
            return DEFAULT_USER
        if self.multi_user is False:
            return None
        name = owner_key(self.accounts, who.user)
        found = self._ids.get(name)
        if found is not None:
            return found
        async with self._locks[name]:  # one account's first requests make one user
            if name not in self._ids:
                found = await self._find(name)
                if found is None and self.multi_user:
                    found = await self._make(name)
                if found is not None:
                    self._ids[name] = found
        return self._ids.get(name)

    async def _find(self, name: str) -> str | None:
        status, body = await self.comfy.call("GET", "/users")
        users = body.get("users") if isinstance(body, dict) else None
        if status != 200 or not isinstance(users, dict):
            if self.multi_user is None:
                log.warning(
                    "ComfyUI runs without --multi-user: every account shares the default user's "
                    "workflows and settings (comfyctl serve starts it with the flag)"
                )
            self.multi_user = False
            return None
        self.multi_user = True
        return next((uid for uid, uname in users.items() if uname == name), None)

    async def _make(self, name: str) -> str | None:
        status, body = await self.comfy.call("POST", "/users", json={"username": name})
        if status == 200 and isinstance(body, str):
            log.info("made ComfyUI's user %s (%s)", body, name)
            return body
        return await self._find(name)  # made meanwhile by another gate in front of this ComfyUI


async def users_route(request: web.Request) -> web.Response:
    """`GET /users` and `POST /users`, answered by the gate."""
    if request.method == "POST":
        return error(403, "accounts are added by the admin (python -m auth_proxy user add NAME)")
    return web.json_response({"storage": "server", "migrated": True})
