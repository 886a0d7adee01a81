"""The account pages' handlers: `/_auth/admin` (admins: add, disable, enable, delete people,
reset their passwords, set their role and waiting-job limit, revoke anyone's token, read the
audit log) and `/_auth/account` (everyone: their own tokens). Both answer a page to a browser
and JSON to a program (a JSON body, or `Accept: application/json`). Which routes need which
role is said in auth_proxy/routes.py; every change is in the audit log, and one that ends
someone's access closes their open WebSockets at once.
"""

from __future__ import annotations

from aiohttp import web

from auth_proxy import admin_pages, audit
from auth_proxy.admin_pages import AdminView, Notice
from auth_proxy.errors import AccountError, BadBody, TokenError
from auth_proxy.forms import read_fields
from auth_proxy.replies import error, html, lang, prefers_json
from auth_proxy.services import GATE, WHO

AUDIT_SHOWN = 200
ADMIN_FIELDS = ("action", "name", "role", "limit", "owner", "confirm", "password")


def _view(gate, me: str) -> AdminView:
    accounts = gate.accounts
    return AdminView(accounts.accounts(), accounts.tokens(), gate.audit.tail(AUDIT_SHOWN), me)


def _public(gate) -> dict:
    return {
        "accounts": [a.public() for a in gate.accounts.accounts()],
        "tokens": [
            {"owner": t.owner, "name": t.name, "created": int(t.created)} for t in gate.accounts.tokens()
        ],
    }


async def admin_get(request: web.Request) -> web.Response:
    gate = request.config_dict[GATE]
    if prefers_json(request):
        return web.json_response({**_public(gate), "audit": gate.audit.tail(AUDIT_SHOWN)})
    return html(admin_pages.admin_page(lang(request), _view(gate, request[WHO].user)))


def _limit(text: str | None) -> int | None:
    if not text or text.strip().lower() in ("", "default", "默认"):
        return None
    try:
        return int(text)
    except ValueError:
        raise AccountError(f"limit {text!r}: a number of jobs, or empty for the default") from None


async def admin_post(request: web.Request) -> web.Response:
    gate, who, language = request.config_dict[GATE], request[WHO], lang(request)
    t = admin_pages.TEXT[language]
    try:
        data, is_json = await read_fields(request, ADMIN_FIELDS)
    except BadBody as exc:
        return error(400, f"{exc}: send action and name as JSON or form fields")
    action, name = data.get("action", ""), data.get("name", "")
    accounts = gate.accounts
    secret: str | None = None
    text = t["done"]
    try:
        if action == "add":
            secret = await gate.in_argon2_pool(
                accounts.add, name, data.get("role", "member"), data.get("password") or None
            )
            text = t["first_password"].format(name=name, pw="")
        elif action in ("disable", "enable"):
            if name == who.user:
                raise AccountError("you cannot disable your own account")
            accounts.set_disabled(name, action == "disable")
        elif action == "delete":
            if name == who.user:
                raise AccountError("you cannot delete your own account")
            if not is_json and data.get("confirm") != "yes":
                raise AccountError("tick the box to confirm the deletion")
            accounts.delete(name)
        elif action == "reset":
            secret = await gate.in_argon2_pool(accounts.reset_password, name, data.get("password") or None)
            text = t["first_password"].format(name=name, pw="")
        elif action == "role":
            accounts.set_role(name, data.get("role", ""))
        elif action == "limit":
            accounts.set_max_waiting(name, _limit(data.get("limit")))
        elif action == "revoke":
            accounts.revoke_token(name, data.get("owner") or None)
        else:
            raise AccountError(
                f"action {action!r}: use add, disable, enable, delete, reset, role, limit or revoke"
            )
    except (AccountError, TokenError) as exc:
        if is_json or prefers_json(request):
            return error(400, str(exc))
        page = admin_pages.admin_page(language, _view(gate, who.user), Notice(str(exc), error=True))
        return html(page, status=400)
    gate.verified.clear()  # a Basic credential remembered for a changed account is checked again
    gate.close_revoked()
    audit.record(
        gate,
        f"user-{action}" if action != "revoke" else "token-revoke",
        by=who.user,
        user=data.get("owner") if action == "revoke" else name,
        token=name if action == "revoke" else None,
        role=data.get("role") if action in ("add", "role") else None,
        client=request.remote,
    )
    if is_json or prefers_json(request):
        return web.json_response({"ok": True, **({"password": secret} if secret else {})})
    page = admin_pages.admin_page(language, _view(gate, who.user), Notice(text, secret=secret))
    return html(page)


async def account_get(request: web.Request) -> web.Response:
    gate, who = request.config_dict[GATE], request[WHO]
    tokens = gate.accounts.tokens(who.user)
    if prefers_json(request):
        return web.json_response(
            {
                "user": who.user,
                "role": who.role,
                "tokens": [{"name": t.name, "created": int(t.created)} for t in tokens],
            }
        )
    account = gate.accounts.account(who.user, fresh=True)
    assert account is not None  # the gate let the request in
    return html(admin_pages.account_page(lang(request), account, tokens))


async def account_post(request: web.Request) -> web.Response:
    """A person's own tokens: created only from a browser session (a token must not breed
    tokens: one stolen would outlive its revocation), revoked with any login."""
    gate, who, language = request.config_dict[GATE], request[WHO], lang(request)
    t = admin_pages.TEXT[language]
    try:
        data, is_json = await read_fields(request, ("action", "name"))
    except BadBody as exc:
        return error(400, f"{exc}: send action (create or revoke) and name")
    action, name = data.get("action", ""), data.get("name", "")
    secret = None
    try:
        if action == "create":
            if who.via != "cookie":
                return error(403, "create tokens in a browser: log in at /login, then open /_auth/account")
            secret = gate.accounts.create_token(name, who.user)
            text = t["new_token_shown"].format(name=name, token="")
        elif action == "revoke":
            gate.accounts.revoke_token(name, who.user)
            text = t["done"]
        else:
            raise TokenError(f"action {action!r}: use create or revoke")
    except TokenError as exc:
        if is_json or prefers_json(request):
            return error(400, str(exc))
        account = gate.accounts.account(who.user, fresh=True)
        assert account is not None
        page = admin_pages.account_page(
            language, account, gate.accounts.tokens(who.user), Notice(str(exc), True)
        )
        return html(page, status=400)
    gate.close_revoked()
    audit.record(gate, f"token-{action}", by=who.user, user=who.user, token=name, client=request.remote)
    if is_json or prefers_json(request):
        return web.json_response({"ok": True, **({"token": secret} if secret else {})})
    account = gate.accounts.account(who.user, fresh=True)
    assert account is not None
    page = admin_pages.account_page(
        language, account, gate.accounts.tokens(who.user), Notice(text, secret=secret)
    )
    return html(page)


async def people(request: web.Request) -> web.Response:
    return await (admin_post if request.method == "POST" else admin_get)(request)


async def account(request: web.Request) -> web.Response:
    return await (account_post if request.method == "POST" else account_get)(request)
