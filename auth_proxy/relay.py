"""Relaying HTTP and WebSocket traffic to ComfyUI, streamed both ways.

The path goes upstream exactly as the client sent it: ComfyUI's routes take file names
with the slash percent-encoded (`/api/userdata/workflows%2Fx.json` is one file name to
aiohttp, `/api/userdata/workflows/x.json` matches no route), so a decoded or re-quoted
path would break the front end. The gate decides on a normalised copy; what it relays
has already passed the login, so the raw spelling gives nothing away.

ComfyUI's origin check rejects a POST whose Origin host differs from its Host when the
Host is a loopback name, so requests go upstream with Host set to the upstream's address
and, when the browser sent an Origin, that Origin rewritten to match. The public host
travels in X-Forwarded-Host.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from urllib.parse import unquote_plus, urlsplit

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict
from yarl import URL

from auth_proxy import native, own_files, pages, splice, ws_filter
from auth_proxy.comfy_users import COMFY_USER, HEADER
from auth_proxy.credentials import WS_PATHS
from auth_proxy.pinning import PINNING
from auth_proxy.replies import USER_FILE, error, html, lang, wants_json
from auth_proxy.services import ARRIVAL, GATE, NORM_PATH, WHO, WS_LOGIN_ENDED, Relayed
from comfy_jobs.comfy import Unreachable
from model_sync import progress as sync_progress

log = logging.getLogger(__name__)

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
# Credentials for the proxy never reach ComfyUI.
STRIP_UP = HOP_BY_HOP | {"authorization", "cookie", "origin", "referer"}
# Claims about the client that only a trusted reverse proxy may make: ComfyUI would log a
# forged address, and in --multi-user mode Comfy-User picks whose files a request reads.
CLAIMS = {"forwarded", "x-real-ip", "comfy-user"}
CHUNK = 256 * 1024


def upstream_headers(request: web.Request, upstream: str, to_gate: bool = False) -> CIMultiDict:
    """`to_gate`: the upstream is another gate (a cluster worker's proxy), which checks the
    same credentials again, so they travel with the request."""
    up = urlsplit(upstream)
    seen = request[ARRIVAL]
    strip = (STRIP_UP - {"authorization", "cookie"}) if to_gate else STRIP_UP

    def kept(name: str) -> bool:
        name = name.lower()
        if name in strip or name.startswith("x-forwarded-"):
            return False
        return seen.trusted or name not in CLAIMS

    headers = CIMultiDict((k, v) for k, v in request.headers.items() if kept(k))
    headers["Host"] = up.netloc
    if "Origin" in request.headers:
        headers["Origin"] = f"{up.scheme}://{up.netloc}"
    headers["X-Forwarded-For"] = seen.forwarded_for
    headers["X-Forwarded-Proto"] = seen.scheme
    headers["X-Forwarded-Host"] = seen.host
    if COMFY_USER in request:  # whose files: from the login, never the client (auth_proxy/native.py)
        headers[HEADER] = request[COMFY_USER]
    return headers


# Routes that serve files users put there (outputs, uploads, workflow files): ComfyUI
# serves an uploaded SVG from /view inline, and /userdata/{file} with the type its name
# says, so a script in one would run in this origin with the admin's session. Opened as a
# page they are sandboxed (no script, an opaque origin); as <img>, fetch() or a
# stylesheet they work as before. SVG and XML are sandboxed on any route. Errors (no file
# served) are left as ComfyUI sends them: with nosniff, the front end's probe for an
# absent user.css would be reported as a refused stylesheet instead of a plain 404.
USER_FILES = re.compile(r"^(/api)?/(view|userdata/.+)$")
ACTIVE_TYPES = ("image/svg+xml", "application/xml", "text/xml", "application/xhtml+xml")


def serves_user_files(norm: str, content_type: str) -> bool:
    return bool(USER_FILES.match(norm)) or content_type.split(";")[0].strip().lower() in ACTIVE_TYPES


def upstream_url(request: web.Request, upstream: str, drop: frozenset[str] = frozenset()) -> URL:
    """ComfyUI's URL for this request: the raw path and query as received, less the
    query parameters named in `drop` (whatever their spelling)."""
    path, sep, query = request.raw_path.partition("?")
    if drop and query:
        kept = [pair for pair in query.split("&") if unquote_plus(pair.partition("=")[0]) not in drop]
        query, sep = "&".join(kept), "?" if kept else ""
    return URL(upstream + path + sep + query, encoded=True)


async def relay_http(
    request: web.Request,
    session: aiohttp.ClientSession,
    upstream: str,
    url: URL,
    metrics,
    worker: str | None = None,
    splicing: bool = False,
    body=None,
    content_type: str | None = None,
) -> web.StreamResponse:
    """`worker`: the cluster worker (its proxy) this is relayed to, named in X-Comfy-Worker.
    `body` (with its `content_type`): what the gate sends instead of the client's body."""
    if body is None:
        body = request.content if request.body_exists else None
    headers = upstream_headers(request, upstream, worker is not None)
    if content_type is not None:
        headers["Content-Type"] = content_type
    started = time.monotonic()
    async with session.request(
        request.method,
        url,
        headers=headers,
        data=body,
        allow_redirects=False,
        auto_decompress=False,
    ) as up:
        metrics.observe_upstream(time.monotonic() - started)
        resp = web.StreamResponse(status=up.status, reason=up.reason)
        for k, v in up.headers.items():
            if k.lower() not in HOP_BY_HOP and k.lower() != "set-cookie":
                resp.headers.add(k, v)
        if worker is not None:
            resp.headers["X-Comfy-Worker"] = worker
        if "Cache-Control" not in up.headers:
            # It was behind the login: no shared cache (a CDN, a caching Ingress) may hand it
            # to the next visitor. A policy ComfyUI sent stands.
            resp.headers["Cache-Control"] = "private"
        if up.headers.get("Content-Length") is not None and "Content-Encoding" not in up.headers:
            resp.content_length = int(up.headers["Content-Length"])
        if up.status < 300 and serves_user_files(request[NORM_PATH], up.headers.get("Content-Type", "")):
            resp.headers.update(USER_FILE)
        if splicing and splice.eligible(request, up):
            await splice.relay_body(request, resp, up)
        else:
            await resp.prepare(request)
            async for chunk in up.content.iter_chunked(CHUNK):
                await resp.write(chunk)
        await resp.write_eof()
        return resp


async def relay_ws(
    request: web.Request,
    session: aiohttp.ClientSession,
    upstream: str,
    url: URL,
    metrics,
    worker: str | None = None,
    view: ws_filter.ClientView | None = None,
) -> web.WebSocketResponse:
    headers = upstream_headers(request, upstream, worker is not None)
    for k in ("Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Extensions"):
        headers.pop(k, None)
    up = await session.ws_connect(url, headers=headers, autoclose=False, autoping=True, max_msg_size=0)
    down = web.WebSocketResponse(autoclose=False, autoping=True, max_msg_size=0)
    await down.prepare(request)
    metrics.open_websockets += 1
    gate = request.config_dict[GATE]
    ended = asyncio.Event()  # set by the gate when these credentials end
    gate.sockets[down] = Relayed(request[WHO], ended)

    async def pump(src, dst, to_client: bool):
        async for msg in src:
            if msg.type == WSMsgType.TEXT:
                text = await view.text(msg.data) if view and to_client else msg.data
                if text is not None:
                    await dst.send_str(text)
            elif msg.type == WSMsgType.BINARY:
                if not (view and to_client) or await view.binary(msg.data):
                    await dst.send_bytes(msg.data)
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                break
            elif msg.type == WSMsgType.ERROR:
                break
        code = src.close_code or 1000
        if not dst.closed:
            await dst.close(code=code)

    try:
        tasks = [
            asyncio.ensure_future(pump(up, down, True)),
            asyncio.ensure_future(pump(down, up, False)),
            asyncio.ensure_future(ended.wait()),
        ]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for t in done:
            if t.exception() and not isinstance(t.exception(), ConnectionError):
                log.debug("websocket relay ended: %r", t.exception())
    finally:
        metrics.open_websockets -= 1
        gate.sockets.pop(down, None)
        if not up.closed:
            await up.close(code=down.close_code or 1000)
        if not down.closed:
            await down.close(
                code=WS_LOGIN_ENDED if ended.is_set() else up.close_code or 1000,
                message=b"login ended" if ended.is_set() else b"",
            )
    return down


# ComfyUI-Manager keeps its config.ini (security_level among it) and snapshots in the user
# folder that ComfyUI's userdata routes read and write (CVE-2025-67303); the front end
# never asks for them, so they are not relayed, whatever the spelling (the normalised path
# has %2F and .. resolved).
MANAGER_FILES = re.compile(r"^(/api)?/(v2/)?userdata/(.*/)?comfyui-manager(/|$)", re.IGNORECASE)
MANAGER_DIR_QUERY = re.compile(r"^\W*comfyui-manager(\W|$)", re.IGNORECASE)


def manager_files(request: web.Request) -> bool:
    if MANAGER_FILES.match(request[NORM_PATH]):
        return True
    return bool(re.match(r"^(/api)?/(v2/)?userdata$", request[NORM_PATH])) and any(
        MANAGER_DIR_QUERY.match(request.query.get(name, "")) for name in ("dir", "path")
    )


async def relay(request: web.Request) -> web.StreamResponse:
    """The catch-all route: everything that is not the proxy's own goes to ComfyUI."""
    if manager_files(request):
        return error(403, "ComfyUI-Manager's own files are not served through the userdata routes")
    gate = request.config_dict[GATE]
    assert gate.client is not None
    upstream, worker = gate.s.upstream, None
    if gate.s.gateway:  # the worker this session is pinned to
        target = await request.config_dict[PINNING].target(request)
        if target is None:
            return unavailable(request, worker="")
        upstream, worker = target.url, target.worker
    try:
        own = await native.handle(request) if worker is None else None  # a worker's gate does it there
        if own is not None:
            return own
        if request.headers.get("Upgrade", "").lower() == "websocket":
            # a worker's proxy (a gateway's upstream) checks ?token= again; ComfyUI never sees it
            url = upstream_url(request, upstream, frozenset() if worker is not None else frozenset({"token"}))
            view = None
            if worker is None:
                url, view = native.websocket(request, url)
            return await relay_ws(request, gate.client, upstream, url, gate.metrics, worker, view)
        # a member's files (auth_proxy/own_files.py); on a gateway, the worker's gate does it
        files = await own_files.handle(request, upstream) if worker is None else None
        if isinstance(files, web.StreamResponse):
            return files
        body: AsyncIterator[bytes] | None = None
        content_type = None
        if files is not None and files.form is not None:
            body, content_type = files.form.body(), files.form.content_type
        # ?token= is the WebSocket's way in; a plain GET of /ws must not carry it onwards either.
        drop = frozenset({"token"}) if request[NORM_PATH] in WS_PATHS else frozenset()
        try:
            return await relay_http(
                request,
                gate.client,
                upstream,
                files.url if files is not None and files.url else upstream_url(request, upstream, drop),
                gate.metrics,
                worker,
                splicing=gate.s.relay == "splice",
                body=body,
                content_type=content_type,
            )
        except aiohttp.ClientError:
            if files is not None and files.form is not None and files.form.refusal is not None:
                return files.form.refusal  # the form was cut on its way, so ComfyUI kept nothing
            raise
    except (
        aiohttp.ClientConnectorError,
        aiohttp.ServerDisconnectedError,
        aiohttp.WSServerHandshakeError,
        Unreachable,
    ) as exc:
        log.info("ComfyUI unavailable for %s %s: %s", request.method, request[NORM_PATH], type(exc).__name__)
        return unavailable(request, worker)


def unavailable(request: web.Request, worker: str | None = None) -> web.Response:
    """`worker`: on a gateway, the worker the session is pinned to ("" when none is up)."""
    if wants_json(request):
        what = "no worker is up" if worker == "" else f"worker {worker}" if worker else "ComfyUI"
        return error(503, f"{what}: starting or restarting; retry shortly", **{"Retry-After": "5"})
    progress = None if worker is not None else sync_progress.read(request.config_dict[GATE].s.progress_file)
    return html(pages.starting_page(lang(request), progress, worker), status=503, **{"Retry-After": "5"})
