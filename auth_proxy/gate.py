"""What every part of the gate shares: the settings, the account and its sessions, the
limits, the counters and the upstream client, kept once per application under `GATE`;
and the two things a request carries through the middlewares (its normalised path and
who is asking)."""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from auth_proxy.metrics import Metrics
from auth_proxy.ratelimit import LoginLimiter
from auth_proxy.sessions import Sessions
from auth_proxy.settings import Settings
from auth_proxy.sqlstate import backend_for
from auth_proxy.state import Admin, Store
from auth_proxy.verified import VerifiedCredentials

log = logging.getLogger(__name__)


@dataclass
class Who:
    user: str
    via: str  # "cookie", "basic", "bearer", "query-token"
    sid: str | None = None


class Gate:
    def __init__(self, settings: Settings):
        self.s = settings
        # files in the state directory, or the cluster's database shared by every replica
        backend = backend_for(settings.jobs.database_url if settings.jobs else "")
        self.store = Store(settings.state_dir, backend)
        self._admin = self.store.load_admin(settings.admin_user, settings.admin_password)
        self.sessions = Sessions(settings.session_hours * 3600, settings.state_dir, backend)
        self.verified = VerifiedCredentials()
        self.argon2_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")
        self.limiter = LoginLimiter(free=settings.login_max_failures, window_s=settings.login_window_s)
        self.metrics = Metrics()
        self.client: aiohttp.ClientSession | None = None

    @property
    def admin(self) -> Admin:
        """The account, as another replica may have changed it (a shared store)."""
        return self.store.fresh(self._admin)

    async def in_argon2_pool(self, fn, *args):
        """argon2 takes ~0.1 s of CPU and 64 MiB per call: off the event loop, so relays
        keep flowing, and at most two at a time, so a burst of logins cannot exhaust memory."""
        return await asyncio.get_running_loop().run_in_executor(self.argon2_pool, fn, *args)

    async def start(self) -> None:
        self.client = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            connector=aiohttp.TCPConnector(limit=0), auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar())
        if self.admin.must_change:
            log.warning("*" * 72)
            log.warning("the admin account %r still has the default password 'admin'.", self.admin.user)
            log.warning("log in at /login and set a new one, or set COMFY_ADMIN_PASSWORD.")
            log.warning("until then ComfyUI is reachable only through that password change.")
            log.warning("*" * 72)

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.close()
        self.argon2_pool.shutdown(wait=False)


GATE = web.AppKey("gate", Gate)
NORM_PATH = web.RequestKey("norm_path", str)
WHO = web.RequestKey("who", Who)
