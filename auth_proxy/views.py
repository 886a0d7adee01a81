"""The proxy's own pages: login, logout, the password change, health, readiness and
metrics. Which of them need a login is decided in auth_proxy/routes.py, not here."""
from __future__ import annotations

import asyncio
import hmac
import logging
from urllib.parse import quote

import aiohttp
from aiohttp import web

from auth_proxy import pages, v2
from auth_proxy.credentials import check_login
from auth_proxy.gate import GATE, WHO
from auth_proxy.responses import (BadBody, error, html, lang, prefers_json, read_fields, safe_next,
                                  see_other, start_session)
from auth_proxy.sessions import COOKIE
from auth_proxy.state import DEFAULT_PASSWORD
from model_sync import progress as sync_progress

log = logging.getLogger(__name__)


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def login_css(_request: web.Request) -> web.Response:
    return web.Response(text=pages.CSS, content_type="text/css")


async def login(request: web.Request) -> web.StreamResponse:
    gate = request.config_dict[GATE]
    language = lang(request)
    if request.method == "GET":
        return html(pages.login_page(language, safe_next(request.query.get("next"))))
    try:
        data, is_json = await read_fields(request)
    except BadBody:
        return error(400, "send JSON {\"username\": ..., \"password\": ...} or form fields")
    user, password = str(data.get("username", "")), str(data.get("password", ""))
    next_url = safe_next(str(data.get("next", "")) or request.query.get("next"))
    result = await check_login(request, user, password, "cookie")
    if isinstance(result, web.Response):
        if is_json:
            return result
        t = pages.TEXT[language]
        msg = t["limited"].format(s=result.headers.get("Retry-After")) if result.status == 429 else t["bad"]
        resp = html(pages.login_page(language, next_url, msg), status=result.status)
        if "Retry-After" in result.headers:
            resp.headers["Retry-After"] = result.headers["Retry-After"]
        return resp
    target = f"/_auth/password?next={quote(next_url)}" if gate.admin.must_change else next_url
    resp = (web.json_response({"ok": True, "must_change_password": gate.admin.must_change})
            if is_json else see_other(target))
    return start_session(resp, request)


async def logout(request: web.Request) -> web.StreamResponse:
    who = request.get(WHO)
    if who and who.sid:
        request.config_dict[GATE].sessions.drop(who.sid)
    resp = web.json_response({"ok": True}) if prefers_json(request) else see_other("/login")
    resp.del_cookie(COOKIE, path="/")
    return resp


async def password(request: web.Request) -> web.StreamResponse:
    gate = request.config_dict[GATE]
    language = lang(request)
    next_url = safe_next(request.query.get("next"))
    if request.method == "GET":
        return html(pages.change_page(language, next_url))
    try:
        data, is_json = await read_fields(request)
    except BadBody as exc:
        return error(400, f"{exc}: send new_password (and repeat_password) as JSON or form fields")
    new = str(data.get("new_password", ""))
    repeat = str(data.get("repeat_password", data.get("new_password", "")))
    next_url = safe_next(str(data.get("next", "")) or next_url)
    t = pages.TEXT[language]
    problem = (t["short"] if len(new) < 8 else t["mismatch"] if not hmac.compare_digest(new, repeat)
               else t["same"] if new == DEFAULT_PASSWORD else None)
    if problem:
        if is_json:
            return error(400, pages.TEXT["en"]["short"] if len(new) < 8 else "invalid new password")
        return html(pages.change_page(language, next_url, problem), status=400)
    await gate.in_argon2_pool(gate.store.change_password, gate.admin, new)
    gate.verified.clear()
    gate.sessions.drop_all()  # every earlier session ends with the old password
    log.info("the admin password was changed; earlier sessions are revoked")
    resp = web.json_response({"ok": True}) if is_json else see_other(next_url)
    return start_session(resp, request)


async def upstream_ready(request: web.Request) -> tuple[bool, str]:
    gate = request.config_dict[GATE]
    assert gate.client is not None
    try:
        async with gate.client.get(gate.s.upstream + "/system_stats",
                                   timeout=aiohttp.ClientTimeout(total=3)) as r:
            return (r.status == 200, f"ComfyUI answered {r.status}")
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        return False, f"ComfyUI at {gate.s.upstream} is not answering ({type(exc).__name__})"


async def readyz(request: web.Request) -> web.Response:
    ok, reason = await upstream_ready(request)
    if ok and (problem := await v2.not_ready(request)):
        ok, reason = False, problem
    if ok:
        return web.json_response({"status": "ready"})
    progress = sync_progress.read(request.config_dict[GATE].s.progress_file)
    body: dict[str, object] = {"status": "starting", "reason": reason}
    if progress:
        body["model_sync"] = progress.summary()
    return web.json_response(body, status=503, headers={"Retry-After": "5"})


async def metrics(request: web.Request) -> web.Response:
    gate = request.config_dict[GATE]
    assert gate.client is not None
    try:
        async with gate.client.get(gate.s.upstream + "/queue", timeout=aiohttp.ClientTimeout(total=2)) as r:
            q = await r.json()
            gate.metrics.queue_depth = len(q.get("queue_running", [])) + len(q.get("queue_pending", []))
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError):
        gate.metrics.queue_depth = None
    text = gate.metrics.render() + await v2.metrics_text(request)
    return web.Response(text=text, content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})
