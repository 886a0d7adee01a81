"""The account pages, in English or Chinese like the login page: the admin's (people, their
tokens, the audit log) and each person's own (their tokens). Plain HTML forms, no script;
every value shown is escaped."""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field

from auth_proxy.accounts import ROLES, Account, Token
from auth_proxy.pages import _page

TEXT = {
    "en": {
        "admin_title": "People - ComfyUI",
        "people": "People",
        "name": "Name",
        "role": "Role",
        "state": "State",
        "limit": "Waiting jobs",
        "default": "default",
        "active": "active",
        "disabled": "disabled",
        "must_change": "must set a password",
        "add": "Add a person",
        "add_button": "Add",
        "disable": "Disable",
        "enable": "Enable",
        "reset": "Reset password",
        "delete": "Delete",
        "set": "Set",
        "confirm": "sure",
        "tokens": "API tokens",
        "owner": "Owner",
        "token": "Token",
        "created": "Created",
        "revoke": "Revoke",
        "new_token": "New token",
        "create": "Create",
        "audit": "Audit log (newest first)",
        "when": "When",
        "event": "Event",
        "details": "Details",
        "first_password": "First password for {name} (shown once; they set their own at first login): {pw}",
        "new_token_shown": "Token {name} (shown once; send it as 'Authorization: Bearer <token>'): {token}",
        "done": "Done.",
        "account_title": "Your account - ComfyUI",
        "signed_in": "Signed in as {name} ({role}).",
        "change_password": "Change your password",
        "back": "Back to ComfyUI",
        "admin_link": "People and audit log",
    },
    "zh": {
        "admin_title": "用户管理 - ComfyUI",
        "people": "用户",
        "name": "用户名",
        "role": "角色",
        "state": "状态",
        "limit": "排队任务上限",
        "default": "默认",
        "active": "正常",
        "disabled": "已停用",
        "must_change": "待设置密码",
        "add": "添加用户",
        "add_button": "添加",
        "disable": "停用",
        "enable": "启用",
        "reset": "重置密码",
        "delete": "删除",
        "set": "设置",
        "confirm": "确认",
        "tokens": "API 令牌",
        "owner": "所有者",
        "token": "令牌",
        "created": "创建时间",
        "revoke": "吊销",
        "new_token": "新令牌",
        "create": "创建",
        "audit": "审计日志（最新在前）",
        "when": "时间",
        "event": "事件",
        "details": "详情",
        "first_password": "{name} 的初始密码（仅显示一次；首次登录时需设置自己的密码）：{pw}",
        "new_token_shown": "令牌 {name}（仅显示一次；以 'Authorization: Bearer <令牌>' 发送）：{token}",
        "done": "已完成。",
        "account_title": "我的账户 - ComfyUI",
        "signed_in": "当前登录：{name}（{role}）。",
        "change_password": "修改密码",
        "back": "返回 ComfyUI",
        "admin_link": "用户与审计日志",
    },
}
ROLE_NAMES = {"en": {"admin": "admin", "member": "member"}, "zh": {"admin": "管理员", "member": "成员"}}
WIDE = "<style>main{max-width:60rem}table{border-collapse:collapse;width:100%}td,th{padding:.3rem;text-align:left;border-bottom:1px solid #444}form.row{display:inline}form.row button,form.row input,form.row select{width:auto;margin:0 .2rem 0 0;padding:.2rem .5rem;font-size:.85rem}.ok{color:#8f8}</style>"


@dataclass
class Notice:
    text: str
    error: bool = False
    secret: str | None = None  # shown once in a <code>, for copying


@dataclass
class AdminView:
    accounts: list[Account]
    tokens: list[Token]
    audit: list[dict] = field(default_factory=list)
    me: str = ""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t)) + " UTC"


def _notice(n: Notice | None) -> str:
    if n is None:
        return ""
    cls = "err" if n.error else "ok"
    secret = f' <code id="secret">{esc(n.secret)}</code>' if n.secret else ""
    return f'<p class="{cls}" role="alert">{esc(n.text)}{secret}</p>'


def _form(action: str, fields: dict[str, str], button: str, extra: str = "", form_id: str = "") -> str:
    hidden = "".join(f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">' for k, v in fields.items())
    ident = f' id="{form_id}"' if form_id else ""
    return f'<form class="row"{ident} method="post" action="{action}">{hidden}{extra}<button type="submit">{esc(button)}</button></form>'


def admin_page(lang: str, view: AdminView, notice: Notice | None = None) -> str:
    t, roles = TEXT[lang], ROLE_NAMES[lang]
    rows = []
    for a in view.accounts:
        state = t["disabled"] if a.disabled else (t["must_change"] if a.must_change else t["active"])
        acts = []
        if a.name != view.me:
            toggle = "enable" if a.disabled else "disable"
            acts.append(_form("/_auth/admin", {"action": toggle, "name": a.name}, t[toggle]))
        acts.append(_form("/_auth/admin", {"action": "reset", "name": a.name}, t["reset"]))
        options = "".join(
            f'<option value="{r}"{" selected" if r == a.role else ""}>{roles[r]}</option>' for r in ROLES
        )
        acts.append(
            _form(
                "/_auth/admin",
                {"action": "role", "name": a.name},
                t["set"],
                f'<select name="role" aria-label="{t["role"]}">{options}</select>',
            )
        )
        limit = "" if a.max_waiting is None else str(a.max_waiting)
        acts.append(
            _form(
                "/_auth/admin",
                {"action": "limit", "name": a.name},
                t["set"],
                f'<input name="limit" size="4" value="{esc(limit)}" placeholder="{t["default"]}" aria-label="{t["limit"]}">',
            )
        )
        if a.name != view.me:
            acts.append(
                _form(
                    "/_auth/admin",
                    {"action": "delete", "name": a.name},
                    t["delete"],
                    f'<label><input type="checkbox" name="confirm" value="yes" required style="width:auto">{t["confirm"]}</label>',
                )
            )
        rows.append(
            f'<tr data-name="{esc(a.name)}"><td>{esc(a.name)}</td><td>{roles.get(a.role, esc(a.role))}</td>'
            f'<td>{state}</td><td>{t["default"] if a.max_waiting is None else a.max_waiting}</td><td>{"".join(acts)}</td></tr>'
        )
    options = "".join(f'<option value="{r}">{roles[r]}</option>' for r in ROLES)
    add = _form(
        "/_auth/admin",
        {"action": "add"},
        t["add_button"],
        f'<input name="name" required pattern="[a-z0-9][a-z0-9_.\\-]{{0,63}}" aria-label="{t["name"]}" placeholder="{t["name"]}">'
        f'<select name="role" aria-label="{t["role"]}">{options}</select>',
        form_id="add",
    )
    tokens = "".join(
        f'<tr><td>{esc(tok.owner)}</td><td>{esc(tok.name)}</td><td>{when(tok.created)}</td>'
        f'<td>{_form("/_auth/admin", {"action": "revoke", "name": tok.name, "owner": tok.owner}, t["revoke"])}</td></tr>'
        for tok in view.tokens
    )
    audit = "".join(
        f'<tr><td>{esc(e.get("time", ""))}</td><td>{esc(e.get("event", ""))}</td>'
        f'<td>{esc(", ".join(f"{k}={v}" for k, v in e.items() if k not in ("time", "event")))}</td></tr>'
        for e in view.audit
    )
    body = (
        f'{WIDE}<h1>{t["people"]}</h1>{_notice(notice)}'
        f'<table id="accounts"><tr><th>{t["name"]}</th><th>{t["role"]}</th><th>{t["state"]}</th><th>{t["limit"]}</th><th></th></tr>{"".join(rows)}</table>'
        f'<h2>{t["add"]}</h2>{add}'
        f'<h2>{t["tokens"]}</h2><table id="tokens"><tr><th>{t["owner"]}</th><th>{t["token"]}</th><th>{t["created"]}</th><th></th></tr>{tokens}</table>'
        f'<h2>{t["audit"]}</h2><table id="audit"><tr><th>{t["when"]}</th><th>{t["event"]}</th><th>{t["details"]}</th></tr>{audit}</table>'
        f'<p><a href="/_auth/account">{esc(view.me)}</a> · <a href="/">{t["back"]}</a></p>'
    )
    return _page(lang, t["admin_title"], body)


def account_page(lang: str, account: Account, tokens: list[Token], notice: Notice | None = None) -> str:
    t, roles = TEXT[lang], ROLE_NAMES[lang]
    rows = "".join(
        f'<tr><td>{esc(tok.name)}</td><td>{when(tok.created)}</td>'
        f'<td>{_form("/_auth/account", {"action": "revoke", "name": tok.name}, t["revoke"])}</td></tr>'
        for tok in tokens
    )
    create = _form(
        "/_auth/account",
        {"action": "create"},
        t["create"],
        f'<input name="name" required aria-label="{t["new_token"]}" placeholder="{t["new_token"]}">',
        form_id="create",
    )
    admin = f' · <a href="/_auth/admin">{t["admin_link"]}</a>' if account.is_admin else ""
    body = (
        f'{WIDE}<h1>{esc(account.name)}</h1>{_notice(notice)}'
        f'<p>{esc(t["signed_in"].format(name=account.name, role=roles.get(account.role, account.role)))}</p>'
        f'<h2>{t["tokens"]}</h2><table id="tokens"><tr><th>{t["token"]}</th><th>{t["created"]}</th><th></th></tr>{rows}</table>{create}'
        f'<p><a href="/_auth/password">{t["change_password"]}</a>{admin} · <a href="/">{t["back"]}</a></p>'
    )
    return _page(lang, t["account_title"], body)
