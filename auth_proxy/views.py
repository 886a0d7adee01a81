"""The proxy's own pages: login, logout, the password change, health, readiness and
metrics. Which of them need a login is decided in auth_proxy/routes.py, not here."""

from __future__ import annotations

import asyncio
import hmac
import logging
from urllib.parse import quote

import aiohttp
from aiohttp import web

from auth_proxy import audit, pages
from auth_proxy.accounts import DEFAULT_PASSWORD
from auth_proxy.cookies import start_session
from auth_proxy.credentials import check_login
from auth_proxy.errors import BadBody
from auth_proxy.forms import read_fields
from auth_proxy.origins import fetch_site, safe_next
from auth_proxy.replies import error, html, lang, prefers_json, see_other
from auth_proxy.services import GATE, JOBS, WHO
from auth_proxy.sessions import COOKIE
from comfy_stack import startup
from model_sync import progress as sync_progress

log = logging.getLogger(__name__)


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def login_css(_request: web.Request) -> web.Response:
    return web.Response(text=pages.CSS, content_type="text/css")


async def favicon(_request: web.Request) -> web.Response:
    # The proxy's own, so that a browser's automatic request for it needs no login.
    return web.Response(
        body=pages.FAVICON, content_type="image/x-icon", headers={"Cache-Control": "max-age=86400"}
    )


async def login(request: web.Request) -> web.StreamResponse:
    language = lang(request)
    if request.method == "GET":
        return html(pages.login_page(language, safe_next(request.query.get("next"))))
    if fetch_site(request) in ("same-site", "cross-site"):
        # Another site's page (fetch with mode no-cors, a hidden form) could otherwise
        # spend the admin's failed-login allowance from the victim's browser.
        return error(403, "a login must come from this server's own login page")
    try:
        data, is_json = await read_fields(request, ("username", "password", "next"))
    except BadBody as exc:
        return error(400, f"{exc}: send JSON {{\"username\": ..., \"password\": ...}} or form fields")
    user, password = data.get("username", ""), data.get("password", "")
    next_url = safe_next(data.get("next") or request.query.get("next"))
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
    target = f"/_auth/password?next={quote(next_url)}" if result.must_change else next_url
    resp = (
        web.json_response({"ok": True, "must_change_password": result.must_change, "role": result.role})
        if is_json
        else see_other(target)
    )
    return start_session(resp, request, result.user)


async def logout(request: web.Request) -> web.StreamResponse:
    who = request.get(WHO)
    gate = request.config_dict[GATE]
    if who and who.sid:
        gate.sessions.drop(who.sid)
        gate.close_revoked()
    resp = web.json_response({"ok": True}) if prefers_json(request) else see_other("/login")
    resp.del_cookie(COOKIE, path="/")
    return resp


async def password(request: web.Request) -> web.StreamResponse:
    """The password is changed only from a browser session (not with a token or Basic,
    which a script or a stolen token holds), and, except for the forced first change from
    the well-known default, only by someone who knows the current one: a session alone
    (a script that ran in this origin, a browser left open) must not be enough to take
    the account for good."""
    gate = request.config_dict[GATE]
    language = lang(request)
    who = request[WHO]
    forced = who.must_change
    next_url = safe_next(request.query.get("next"))
    if who.via != "cookie":
        return error(403, "change the password in a browser: log in at /login, then open /_auth/password")
    if request.method == "GET":
        return html(pages.change_page(language, next_url, forced=forced))
    try:
        data, is_json = await read_fields(
            request, ("current_password", "new_password", "repeat_password", "next")
        )
    except BadBody as exc:
        return error(
            400, f"{exc}: send current_password, new_password (and repeat_password) as JSON or form fields"
        )
    new = data.get("new_password", "")
    repeat = data.get("repeat_password", new)
    next_url = safe_next(data.get("next") or next_url)
    t = pages.TEXT[language]

    def refuse(status: int, key: str, **fmt: str) -> web.Response:
        if is_json:
            return error(
                status, pages.TEXT["en"][key].format(**fmt), **({"Retry-After": fmt["s"]} if fmt else {})
            )
        resp = html(pages.change_page(language, next_url, t[key].format(**fmt), forced=forced), status=status)
        if fmt:
            resp.headers["Retry-After"] = fmt["s"]
        return resp

    if not forced:
        if "current_password" not in data:
            return refuse(400, "need_current")
        checked = await check_login(request, who.user, data["current_password"], "cookie")
        if isinstance(checked, web.Response):
            if checked.status == 429:
                return refuse(429, "limited", s=checked.headers["Retry-After"])
            return refuse(403, "wrong_current")
    problem = (
        "short"
        if len(new) < 8
        else "mismatch"
        if not hmac.compare_digest(new, repeat)
        else "same"
        if new == DEFAULT_PASSWORD
        else None
    )
    if problem:
        return refuse(400, problem)
    # every earlier session of the account ends with the old password
    await gate.in_argon2_pool(gate.accounts.change_password, who.user, new)
    gate.verified.clear()
    gate.close_revoked()
    log.info("the password of %r was changed; its earlier sessions are revoked", who.user)
    audit.record(gate, "password-changed", user=who.user, client=request.remote)
    resp = web.json_response({"ok": True}) if is_json else see_other(next_url)
    return start_session(resp, request, who.user)


async def session(request: web.Request) -> web.Response:
    """Who is logged in: the front-end extension asks this to tell an ended login (401)
    from a server that is away."""
    who = request[WHO]
    body = {"user": who.user, "via": who.via, "role": who.role}
    if who.token:
        body["token"] = who.token
    return web.json_response(body)


def start_report(gate) -> dict[str, object]:
    """The start's timed phases (comfy_stack.startup) and what it waits for now. /readyz is
    public: phase names and seconds only; each pack's import time is in the log and in
    `comfyctl doctor`, where only the operator looks."""
    run_dir = gate.s.run_dir
    if run_dir is None:
        return {}
    serve, comfyui = (startup.read(run_dir / name) for name in (startup.SERVE_FILE, startup.COMFYUI_FILE))
    report: dict[str, object] = {}
    if serve:
        report["start"] = serve.summary()
    if comfyui:
        report["comfyui_start"] = comfyui.summary()
    if waiting := startup.waiting_for(serve, comfyui):
        report["waiting_for"] = waiting
    return report


def sync_waiting_for(progress: sync_progress.Snapshot) -> str | None:
    if progress.state not in ("planning", "running"):
        return None
    return (
        f"syncing models: {progress.bytes_done / 1e9:.1f} of {progress.bytes_total / 1e9:.1f} GB "
        f"({progress.files_done} of {progress.files_total} files)"
    )


async def jobs_not_ready(request: web.Request) -> str | None:
    jobs = request.config_dict.get(JOBS)
    return await jobs.not_ready() if jobs else None


async def readyz(request: web.Request) -> web.Response:
    gate = request.config_dict[GATE]
    # A cluster's gateway has no ComfyUI of its own: it is ready when its ledger answers.
    ok, reason = await gate.readiness.get(gate, lambda: jobs_not_ready(request), comfyui=not gate.s.gateway)
    report = start_report(gate)
    if ok:
        return web.json_response({"status": "ready", **report})
    progress = sync_progress.read(gate.s.progress_file)
    body: dict[str, object] = {"status": "starting", "reason": reason, **report}
    if progress:
        body["model_sync"] = progress.summary()
        if syncing := sync_waiting_for(progress):
            body["waiting_for"] = syncing
    return web.json_response(body, status=503, headers={"Retry-After": "2"})


async def metrics(request: web.Request) -> web.Response:
    gate = request.config_dict[GATE]
    assert gate.client is not None
    try:
        async with gate.client.get(gate.s.upstream + "/queue", timeout=aiohttp.ClientTimeout(total=2)) as r:
            q = await r.json()
            gate.metrics.queue_depth = len(q.get("queue_running", [])) + len(q.get("queue_pending", []))
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError):
        gate.metrics.queue_depth = None
    jobs = request.config_dict.get(JOBS)
    text = gate.metrics.render() + (await jobs.metrics_text() if jobs else "")
    return web.Response(
        text=text, content_type="text/plain", charset="utf-8", headers={"X-Content-Type-Options": "nosniff"}
    )
