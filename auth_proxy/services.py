"""The application's services: what every part of the gate shares (the settings, the
account and its sessions, the limits, the counters and the upstream client), kept once per
application under `GATE`, and the v2 job service under `JOBS`; and what a request carries
through the middlewares (its normalised path, where it came from, who is asking)."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from auth_proxy import hashing
from auth_proxy.accounts import Accounts, open_accounts
from auth_proxy.audit import AuditLog
from auth_proxy.forwarded import Arrival
from auth_proxy.metrics import Metrics
from auth_proxy.ratelimit import LoginLimiter
from auth_proxy.readiness import Readiness
from auth_proxy.sessions import Sessions, session_key
from auth_proxy.settings import Settings
from auth_proxy.verified import VerifiedCredentials
from comfy_jobs.service import JobsService

log = logging.getLogger(__name__)
# The close code of a WebSocket whose login ended (an application code, like HTTP's 401);
# the front-end extension takes it as a cue to check the login.
WS_LOGIN_ENDED = 4401


@dataclass
class Who:
    user: str  # the account's name (for an API token, its owner's)
    via: str  # "cookie", "basic", "bearer", "query-token"
    sid: str | None = None
    token_digest: str | None = None  # which token, for bearer and query-token
    generation: int = 0  # the password generation a cookie or Basic proved
    role: str = "admin"  # "admin" or "member" (auth_proxy/accounts.py ROLES)
    token: str | None = None  # the token's name, for bearer and query-token
    must_change: bool = False  # the account's password was set by the admin (or is the default)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass
class Relayed:
    """A WebSocket being relayed: who opened it, and the event that ends it."""

    who: Who
    ended: asyncio.Event


class Gate:
    def __init__(self, settings: Settings):
        self.s = settings
        # in the job ledger's database: SQLite on one box, shared by every replica in a cluster
        self.accounts: Accounts = open_accounts(settings)
        self.sessions = Sessions(settings.session_hours * 3600, self.accounts)
        self.audit = AuditLog(settings.state_dir)
        self.verified = VerifiedCredentials()
        self.argon2_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")
        self.limiter = LoginLimiter(free=settings.login_max_failures, window_s=settings.login_window_s)
        self.pending_logins = 0  # password checks waiting for or in the argon2 pool
        self.metrics = Metrics()
        self.readiness = Readiness()
        self.client: aiohttp.ClientSession | None = None
        self.sockets: dict[web.WebSocketResponse, Relayed] = {}  # the WebSockets being relayed
        self._watch: asyncio.Task | None = None
        self._dummy: asyncio.Future | None = None

    def still_valid(self, who: Who) -> bool:
        """Whether the credentials `who` proved still hold: the token is not revoked, the
        session not ended or expired, the password not changed since, the account neither
        disabled nor deleted."""
        if who.token_digest is not None:
            return self.accounts.token_valid(who.token_digest)
        if who.sid is not None:
            return self.sessions.alive(session_key(who.sid))
        account = self.accounts.account(who.user)
        return account is not None and not account.disabled and who.generation == account.generation

    def close_revoked(self) -> None:
        """Close every relayed WebSocket whose credentials no longer hold: a logout, a
        password change, an expired session or a revoked token ends them too."""
        for relayed in list(self.sockets.values()):
            if not relayed.ended.is_set() and not self.still_valid(relayed.who):
                log.info(
                    "closing a WebSocket of %s: its %s credentials ended", relayed.who.user, relayed.who.via
                )
                # The relay closes it (with WS_LOGIN_ENDED), so that its own close handshake
                # and this one never race.
                relayed.ended.set()

    async def watch_credentials(self) -> None:
        # Token revocations come from another process (the CLI), and sessions expire on
        # their own: looked for once a second.
        while True:
            await asyncio.sleep(1.0)
            try:
                self.close_revoked()
            except Exception:  # noqa: BLE001 - a bad tokens file must not stop the watch
                log.exception("checking open WebSockets' credentials failed; trying again")

    async def in_argon2_pool(self, fn, *args):
        """argon2 takes ~0.1 s of CPU and 64 MiB per call: off the event loop, so relays
        keep flowing, and at most two at a time, so a burst of logins cannot exhaust memory.
        The threads wait for hashing.py's worker processes, where that memory is spent."""
        return await asyncio.get_running_loop().run_in_executor(self.argon2_pool, fn, *args)

    async def start(self) -> None:
        self.client = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            # Bounded, so that no burst of requests (or of relayed WebSockets) opens more
            # connections to ComfyUI than it has file descriptors; more wait for one.
            connector=aiohttp.TCPConnector(limit=self.s.upstream_connections),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._watch = asyncio.ensure_future(self.watch_credentials())
        # The wrong-user check's hash, made now, so that the first such login costs no more
        # than later ones.
        self._dummy = asyncio.ensure_future(self.in_argon2_pool(hashing.dummy_hash))
        admin = self.accounts.account(self.s.admin_user, fresh=True)
        if admin is not None and admin.must_change:
            log.warning("*" * 72)
            log.warning("the admin account %r still has the default password 'admin'.", admin.name)
            log.warning("log in at /login and set a new one, or set COMFY_ADMIN_PASSWORD.")
            log.warning("until then ComfyUI is reachable only through that password change.")
            log.warning("*" * 72)

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        if self.client is not None:
            await self.client.close()
        self.argon2_pool.shutdown(wait=False)
        self.accounts.close()
        self.audit.close()


GATE = web.AppKey("gate", Gate)
JOBS = web.AppKey("jobs", JobsService)  # the v2 job service, when the settings carry job settings
NORM_PATH = web.RequestKey("norm_path", str)
ARRIVAL = web.RequestKey("arrival", Arrival)
WHO = web.RequestKey("who", Who)
