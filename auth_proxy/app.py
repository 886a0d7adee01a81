"""The aiohttp application: the proxy's own routes, the login gate, and the relay.

Every request goes through one handler so that no route can be added that skips the
gate: it normalises the path, serves the proxy's own pages, authenticates (session
cookie, HTTP Basic, Bearer token, or `?token=` on the WebSocket only), applies the CSRF
check to cookie-authenticated writes, and only then relays to ComfyUI.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import aiohttp
from aiohttp import web

from auth_proxy import pages
from auth_proxy.metrics import Metrics, route_group
from auth_proxy.paths import BadPath, is_api_path, is_public, normalise
from auth_proxy.ratelimit import LoginLimiter
from auth_proxy.relay import relay_http, relay_ws
from auth_proxy.sessions import COOKIE, Sessions
from auth_proxy.settings import Settings
from auth_proxy.state import DEFAULT_PASSWORD, Store
from auth_proxy.v2 import V2_KEY
from auth_proxy.v2 import register as register_v2
from auth_proxy.verified import VerifiedCredentials

log = logging.getLogger(__name__)
NORM_PATH = web.RequestKey("norm_path", str)
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
MUST_CHANGE_MSG = ("the admin password is still the default: log in at /login in a browser "
                   "and set a new one (or set COMFY_ADMIN_PASSWORD) before using the API")


def see_other(location: str) -> web.Response:
    # A plain response rather than web.HTTPSeeOther: cookies are set on it before returning.
    return web.Response(status=303, headers={"Location": location})


@dataclass
class Who:
    user: str
    via: str  # "cookie", "basic", "bearer", "query-token"
    sid: str | None = None


class Gate:
    def __init__(self, settings: Settings):
        self.s = settings
        self.store = Store(settings.state_dir)
        self.admin = self.store.load_admin(settings.admin_user, settings.admin_password)
        self.sessions = Sessions(settings.session_hours * 3600, settings.state_dir)
        self.verified = VerifiedCredentials()
        self.argon2_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")
        self.limiter = LoginLimiter(free=settings.login_max_failures, window_s=settings.login_window_s)
        self.metrics = Metrics()
        self.client: aiohttp.ClientSession | None = None

    # --- helpers ---------------------------------------------------------------------
    @staticmethod
    def wants_json(request: web.Request, norm: str) -> bool:
        accept = request.headers.get("Accept", "")
        return (request.method not in ("GET", "HEAD") or is_api_path(norm)
                or ("json" in accept and "text/html" not in accept)
                or "Authorization" in request.headers
                or request.headers.get("Upgrade", "").lower() == "websocket")

    @staticmethod
    def error(status: int, message: str, **headers: str) -> web.Response:
        return web.json_response({"error": message}, status=status, headers=headers)

    def lang(self, request: web.Request) -> str:
        return pages.language(request.headers.get("Accept-Language"))

    def secure(self, request: web.Request) -> bool:
        if self.s.secure_cookies != "auto":
            return self.s.secure_cookies == "always"
        return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"

    @staticmethod
    def safe_next(value: str | None) -> str:
        """Only a same-origin relative path: no scheme, no '//host', no backslash tricks."""
        if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
            return "/"
        if urlsplit(value).netloc or any(ord(c) < 32 for c in value):
            return "/"
        return value

    def same_origin(self, request: web.Request) -> bool:
        source = request.headers.get("Origin") or request.headers.get("Referer")
        if not source or source == "null":
            return False
        host = urlsplit(source).netloc.lower()
        allowed = {request.host.lower()}
        if "X-Forwarded-Host" in request.headers:
            allowed.add(request.headers["X-Forwarded-Host"].split(",")[0].strip().lower())
        return host in allowed

    # --- authentication --------------------------------------------------------------
    async def authenticate(self, request: web.Request, norm: str) -> Who | web.Response | None:
        auth = request.headers.get("Authorization", "")
        scheme, _, cred = auth.partition(" ")
        if scheme.lower() == "bearer" and cred:
            name = self.store.find_token(cred.strip())
            if name is None:
                self.metrics.login_failures += 1
                return self.error(401, "unknown or revoked API token")
            return Who(f"token:{name}", "bearer")
        if scheme.lower() == "basic" and cred:
            try:
                user, _, password = base64.b64decode(cred.strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return self.error(401, "malformed Basic credentials")
            return await self.check_login(request, user, password, "basic")
        if norm in ("/ws", "/api/ws") and request.query.get("token"):
            name = self.store.find_token(request.query["token"])
            if name is None:
                self.metrics.login_failures += 1
                return self.error(401, "unknown or revoked API token")
            return Who(f"token:{name}", "query-token")
        sid = request.cookies.get(COOKIE)
        session = self.sessions.get(sid, self.admin.generation)
        if session:
            return Who(session.user, "cookie", sid)
        return None

    async def check_login(self, request, user: str, password: str, via: str) -> Who | web.Response:
        keys = [f"ip:{request.remote}", f"user:{user.lower()}"]
        wait = self.limiter.retry_after(keys)
        if wait > 0:
            secs = str(int(wait) + 1)
            return self.error(429, f"too many failed logins; try again in {secs} s", **{"Retry-After": secs})
        known = self.verified.key(self.admin.generation, user, password) if via == "basic" else None
        if known and self.verified.known(known):
            return Who(self.admin.user, via)
        if not await self.in_argon2_pool(self.store.check_password, self.admin, user, password):
            self.limiter.failed(keys)
            self.metrics.login_failures += 1
            log.warning("failed login from %s", request.remote)
            return self.error(401, "wrong user name or password")
        self.limiter.succeeded(keys)
        if known:
            self.verified.add(known)
        return Who(self.admin.user, via)

    async def in_argon2_pool(self, fn, *args):
        """argon2 takes ~0.1 s of CPU and 64 MiB per call: off the event loop, so relays
        keep flowing, and at most two at a time, so a burst of logins cannot exhaust memory."""
        return await asyncio.get_running_loop().run_in_executor(self.argon2_pool, fn, *args)

    # --- the proxy's own routes --------------------------------------------------------
    async def login(self, request: web.Request) -> web.StreamResponse:
        lang = self.lang(request)
        if request.method == "GET":
            return web.Response(text=pages.login_page(lang, self.safe_next(request.query.get("next"))),
                                content_type="text/html")
        is_json = request.content_type == "application/json"
        try:
            data = await request.json() if is_json else await request.post()
        except ValueError:
            return self.error(400, "send JSON {\"username\": ..., \"password\": ...} or form fields")
        user, password = str(data.get("username", "")), str(data.get("password", ""))
        next_url = self.safe_next(str(data.get("next", "")) or request.query.get("next"))
        result = await self.check_login(request, user, password, "cookie")
        if isinstance(result, web.Response):
            if is_json:
                return result
            t = pages.TEXT[lang]
            msg = t["limited"].format(s=result.headers.get("Retry-After")) if result.status == 429 else t["bad"]
            resp = web.Response(text=pages.login_page(lang, next_url, msg), status=result.status,
                                content_type="text/html")
            if "Retry-After" in result.headers:
                resp.headers["Retry-After"] = result.headers["Retry-After"]
            return resp
        sid = self.sessions.create(self.admin.user, self.admin.generation)
        target = f"/_auth/password?next={quote(next_url)}" if self.admin.must_change else next_url
        resp = (web.json_response({"ok": True, "must_change_password": self.admin.must_change})
                if is_json else see_other(target))
        resp.set_cookie(COOKIE, sid, httponly=True, samesite="Lax", secure=self.secure(request),
                        path="/", max_age=int(self.sessions.lifetime_s))
        return resp

    async def logout(self, request: web.Request, who: Who | None) -> web.StreamResponse:
        if who and who.via == "cookie" and not self.same_origin(request):
            return self.error(403, "cross-site logout refused")
        if who and who.sid:
            self.sessions.drop(who.sid)
        resp = see_other("/login") if not self.wants_json_logout(request) else web.json_response({"ok": True})
        resp.del_cookie(COOKIE, path="/")
        return resp

    @staticmethod
    def wants_json_logout(request: web.Request) -> bool:
        return "json" in request.headers.get("Accept", "") and "text/html" not in request.headers.get("Accept", "")

    async def password(self, request: web.Request, who: Who) -> web.StreamResponse:
        lang = self.lang(request)
        next_url = self.safe_next(request.query.get("next"))
        if request.method == "GET":
            return web.Response(text=pages.change_page(lang, next_url), content_type="text/html")
        is_json = request.content_type == "application/json"
        data = await request.json() if is_json else await request.post()
        new, repeat = str(data.get("new_password", "")), str(data.get("repeat_password", data.get("new_password", "")))
        next_url = self.safe_next(str(data.get("next", "")) or next_url)
        t = pages.TEXT[lang]
        problem = (t["short"] if len(new) < 8 else t["mismatch"] if not hmac.compare_digest(new, repeat)
                   else t["same"] if new == DEFAULT_PASSWORD else None)
        if problem:
            if is_json:
                return self.error(400, pages.TEXT["en"]["short"] if len(new) < 8 else "invalid new password")
            return web.Response(text=pages.change_page(lang, next_url, problem), status=400,
                                content_type="text/html")
        await self.in_argon2_pool(self.store.change_password, self.admin, new)
        self.verified.clear()
        self.sessions.drop_all()  # every earlier session ends with the old password
        log.info("the admin password was changed; earlier sessions are revoked")
        sid = self.sessions.create(self.admin.user, self.admin.generation)
        resp = web.json_response({"ok": True}) if is_json else see_other(next_url)
        resp.set_cookie(COOKIE, sid, httponly=True, samesite="Lax", secure=self.secure(request),
                        path="/", max_age=int(self.sessions.lifetime_s))
        return resp

    async def upstream_ready(self) -> tuple[bool, str]:
        assert self.client is not None
        try:
            async with self.client.get(self.s.upstream + "/system_stats",
                                       timeout=aiohttp.ClientTimeout(total=3)) as r:
                return (r.status == 200, f"ComfyUI answered {r.status}")
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            return False, f"ComfyUI at {self.s.upstream} is not answering ({type(exc).__name__})"

    async def readyz(self, request: web.Request) -> web.Response:
        ok, reason = await self.upstream_ready()
        if ok and V2_KEY in request.app and (problem := await request.app[V2_KEY].not_ready()):
            ok, reason = False, problem
        if ok:
            return web.json_response({"status": "ready"})
        progress = pages.read_progress(self.s.progress_file)
        body = {"status": "starting", "reason": reason}
        if progress:
            body["model_sync"] = {k: progress.get(k) for k in
                                  ("state", "bytes_done", "bytes_total", "files_done", "files_total")}
        return web.json_response(body, status=503, headers={"Retry-After": "5"})

    async def metrics_page(self, request: web.Request) -> web.Response:
        assert self.client is not None
        try:
            async with self.client.get(self.s.upstream + "/queue", timeout=aiohttp.ClientTimeout(total=2)) as r:
                q = await r.json()
                self.metrics.queue_depth = len(q.get("queue_running", [])) + len(q.get("queue_pending", []))
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError):
            self.metrics.queue_depth = None
        text = self.metrics.render()
        if V2_KEY in request.app:
            text += await request.app[V2_KEY].metrics_text()
        return web.Response(text=text, content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    def unavailable(self, request: web.Request, norm: str) -> web.Response:
        if self.wants_json(request, norm):
            return self.error(503, "ComfyUI is starting or restarting; retry shortly", **{"Retry-After": "5"})
        return web.Response(text=pages.starting_page(self.lang(request), pages.read_progress(self.s.progress_file)),
                            status=503, content_type="text/html", headers={"Retry-After": "5"})

    # --- the one handler ---------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            norm = normalise(request.raw_path.split("?", 1)[0])
        except BadPath:
            return self.error(400, "malformed path")
        request[NORM_PATH] = norm
        if norm == "/healthz":
            return web.json_response({"status": "ok"})
        if norm == "/readyz":
            return await self.readyz(request)
        if norm == "/_auth/login.css":
            return web.Response(text=pages.CSS, content_type="text/css")
        if norm == "/login" and request.method in ("GET", "POST"):
            return await self.login(request)
        who = await self.authenticate(request, norm)
        if isinstance(who, web.Response):
            return who
        if norm == "/logout":
            return await self.logout(request, who)
        if who is None:
            if self.wants_json(request, norm):
                return self.error(401, "login required: send a session cookie, HTTP Basic or "
                                       "'Authorization: Bearer <token>'")
            raise web.HTTPFound(f"/login?next={quote(request.path_qs if not is_public(norm) else '/')}")
        if who.via == "cookie" and (request.method not in SAFE_METHODS
                                    or request.headers.get("Upgrade", "").lower() == "websocket"):
            if not self.same_origin(request):
                return self.error(403, "cross-site request refused: Origin or Referer must match this host")
        if norm == "/_auth/password":
            return await self.password(request, who)
        if self.admin.must_change:
            if who.via == "cookie" and not self.wants_json(request, norm):
                raise web.HTTPFound(f"/_auth/password?next={quote(request.path_qs)}")
            return self.error(403, MUST_CHANGE_MSG)
        if norm == "/metrics":
            return await self.metrics_page(request)
        if V2_KEY in request.app and (resp := await request.app[V2_KEY].dispatch(request, norm)) is not None:
            return resp
        assert self.client is not None
        path = quote(norm, safe="/:@!$&'()*+,;=-._~")
        try:
            if request.headers.get("Upgrade", "").lower() == "websocket":
                return await relay_ws(request, self.client, self.s.upstream, path, self.metrics)
            return await relay_http(request, self.client, self.s.upstream, path, self.metrics)
        except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError,
                aiohttp.WSServerHandshakeError) as exc:
            log.info("ComfyUI unavailable for %s %s: %s", request.method, norm, type(exc).__name__)
            return self.unavailable(request, norm)


@web.middleware
async def count_and_hide_errors(request: web.Request, handler):
    gate: Gate = request.app[GATE]
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    except web.HTTPException as exc:
        status = exc.status
        raise
    except (ConnectionResetError, asyncio.CancelledError):
        status = 499
        raise
    except Exception:  # noqa: BLE001 - never show a traceback to a client
        log.exception("error while handling %s %s", request.method, request.get(NORM_PATH, "?"))
        return web.json_response({"error": "internal error in the proxy; see its log"}, status=500)
    finally:
        gate.metrics.requests[(route_group(request.get(NORM_PATH, "/")), status)] += 1


GATE = web.AppKey("gate", Gate)


def create_app(settings: Settings) -> web.Application:
    gate = Gate(settings)
    # The limit applies only to bodies the proxy reads itself (login and password forms);
    # relayed bodies are streamed to ComfyUI from request.content and are not limited.
    app = web.Application(middlewares=[count_and_hide_errors], client_max_size=1 << 20)
    app[GATE] = gate

    async def client_ctx(_app):
        gate.client = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            connector=aiohttp.TCPConnector(limit=0), auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar())
        if gate.admin.must_change:
            log.warning("*" * 72)
            log.warning("the admin account %r still has the default password 'admin'.", gate.admin.user)
            log.warning("log in at /login and set a new one, or set COMFY_ADMIN_PASSWORD.")
            log.warning("until then ComfyUI is reachable only through that password change.")
            log.warning("*" * 72)
        yield
        await gate.client.close()
        gate.argon2_pool.shutdown(wait=False)

    app.cleanup_ctx.append(client_ctx)
    register_v2(app, settings)
    app.router.add_route("*", "/{tail:.*}", gate.handle)
    return app
