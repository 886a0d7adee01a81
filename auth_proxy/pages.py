"""The proxy's own pages (login, change password, starting), in English or Chinese
following the browser's Accept-Language. Plain HTML and one stylesheet: no script needed."""

from __future__ import annotations

import base64
import html

from model_sync.progress import Snapshot

TEXT = {
    "en": {
        "title": "Sign in - ComfyUI",
        "user": "User",
        "password": "Password",
        "signin": "Sign in",
        "bad": "Wrong user name or password.",
        "limited": "Too many failed attempts. Try again in {s} s.",
        "change_title": "Set a new password",
        "new": "New password",
        "repeat": "Repeat it",
        "change": "Save and continue",
        "change_why": "Your password is the default, or one an admin set. Choose a new one (8 characters or more) to continue.",
        "short": "The new password needs at least 8 characters.",
        "mismatch": "The two passwords differ.",
        "same": "Choose a password other than the default.",
        "start_title": "ComfyUI is starting",
        "start_body": "ComfyUI is not answering yet. This page refreshes by itself.",
        "worker": "Your session runs on worker {name}.",
        "no_worker": "No worker is running yet: jobs wait in the queue until one starts.",
        "sync": "Syncing models: {done} of {total} files, {gb_done:.1f} of {gb_total:.1f} GB",
        "sync_failed": "The model sync failed: {err}",
        "logout": "Sign out",
        "change_title_own": "Change the password",
        "change_why_own": "Enter the current password and a new one (8 characters or more). Every other session is signed out.",
        "current": "Current password",
        "wrong_current": "The current password is wrong.",
        "need_current": "Enter the current password.",
        "cross_title": "Opened from another site",
        "cross_body": "This address was opened by a page of another site, so it was not loaded. If you meant to open it, continue here:",
        "cross_home": "Or go to ComfyUI.",
    },
    "zh": {
        "title": "登录 - ComfyUI",
        "user": "用户名",
        "password": "密码",
        "signin": "登录",
        "bad": "用户名或密码错误。",
        "limited": "失败次数过多，请在 {s} 秒后重试。",
        "change_title": "设置新密码",
        "new": "新密码",
        "repeat": "再次输入",
        "change": "保存并继续",
        "change_why": "您的密码是默认密码或由管理员设置。请设置一个新密码（至少 8 个字符）后继续。",
        "short": "新密码至少需要 8 个字符。",
        "mismatch": "两次输入的密码不一致。",
        "same": "请勿使用默认密码。",
        "start_title": "ComfyUI 正在启动",
        "start_body": "ComfyUI 尚未就绪，本页面会自动刷新。",
        "worker": "您的会话运行在工作节点 {name} 上。",
        "no_worker": "尚无工作节点在运行：任务会在队列中等待，直到有节点启动。",
        "sync": "正在同步模型：{done}/{total} 个文件，{gb_done:.1f}/{gb_total:.1f} GB",
        "sync_failed": "模型同步失败：{err}",
        "logout": "退出登录",
        "change_title_own": "修改密码",
        "change_why_own": "请输入当前密码和新密码（至少 8 个字符）。其他所有会话都将退出登录。",
        "current": "当前密码",
        "wrong_current": "当前密码错误。",
        "need_current": "请输入当前密码。",
        "cross_title": "来自其他网站的链接",
        "cross_body": "此地址由其他网站的页面打开，因此未被加载。如果确实要打开，请点击：",
        "cross_home": "或前往 ComfyUI。",
    },
}

CSS = """body{font-family:system-ui,sans-serif;background:#1e1e24;color:#eee;display:flex;
min-height:100vh;align-items:center;justify-content:center;margin:0}
main{background:#2a2a33;padding:2rem 2.5rem;border-radius:10px;min-width:18rem;max-width:28rem}
h1{font-size:1.3rem;margin-top:0}label{display:block;margin:.8rem 0 .2rem}
input{width:100%;box-sizing:border-box;padding:.5rem;border-radius:5px;border:1px solid #555;
background:#1e1e24;color:#eee}button{margin-top:1.2rem;width:100%;padding:.6rem;border:0;
border-radius:5px;background:#4a7dff;color:#fff;font-size:1rem;cursor:pointer}
.err{color:#ff8a8a}progress{width:100%}"""


# A 32x32 icon (a white ring on the sign-in button's blue), PNG inside an ICO container.
FAVICON = base64.b64decode(
    "AAABAAEAICAAAAEAIACcAAAAFgAAAIlQTkcNChoKAAAADUlIRFIAAAAgAAAAIAgGAAAAc3p69AAAAGNJREFUeNrt1ssNACAIA1DmcydnxxEMH6GYNvGq74CArK3aeYQAAsYBbnkGsCYV4E0KIJoQwHqpB2ECeOvFBcio8FANVDxOAAGzAOXfsL0RQbTi9mEEMY4hFhKIlYxbMQHfAg7qXOgIsJRbDQAAAABJRU5ErkJggg=="
)


def language(accept_language: str | None) -> str:
    """'zh' when the browser prefers Chinese over English, else 'en'."""
    best, best_q = "en", -1.0
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        lang = tag.strip().lower()[:2]
        if lang in TEXT and q > best_q:
            best, best_q = lang, q
    return best


def _page(lang: str, title: str, body: str, refresh: int | None = None) -> str:
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">{meta}'
        f'<title>{html.escape(title)}</title><link rel="stylesheet" href="/_auth/login.css">'
        f'</head><body><main>{body}</main></body></html>'
    )


def login_page(lang: str, next_url: str, error: str | None = None) -> str:
    t = TEXT[lang]
    err = f'<p class="err" role="alert">{html.escape(error)}</p>' if error else ""
    body = (
        f'<h1>ComfyUI</h1>{err}<form method="post" action="/login">'
        f'<input type="hidden" name="next" value="{html.escape(next_url)}">'
        f'<label for="username">{t["user"]}</label>'
        f'<input id="username" name="username" autocomplete="username" required autofocus>'
        f'<label for="password">{t["password"]}</label>'
        f'<input id="password" name="password" type="password" autocomplete="current-password" required>'
        f'<button type="submit">{t["signin"]}</button></form>'
    )
    return _page(lang, t["title"], body)


def change_page(lang: str, next_url: str, error: str | None = None, forced: bool = True) -> str:
    """The password change: the forced first one (the default password is known to all, so
    it is not asked for), or a change of the admin's own, which needs the current one."""
    t = TEXT[lang]
    title, why = (
        (t["change_title"], t["change_why"]) if forced else (t["change_title_own"], t["change_why_own"])
    )
    err = f'<p class="err" role="alert">{html.escape(error)}</p>' if error else ""
    current = (
        ""
        if forced
        else f'<label for="current_password">{t["current"]}</label>'
        f'<input id="current_password" name="current_password" type="password" '
        f'autocomplete="current-password" required autofocus>'
    )
    body = (
        f'<h1>{title}</h1><p>{why}</p>{err}'
        f'<form method="post" action="/_auth/password">'
        f'<input type="hidden" name="next" value="{html.escape(next_url)}">{current}'
        f'<label for="new_password">{t["new"]}</label>'
        f'<input id="new_password" name="new_password" type="password" autocomplete="new-password" required>'
        f'<label for="repeat_password">{t["repeat"]}</label>'
        f'<input id="repeat_password" name="repeat_password" type="password" autocomplete="new-password" required>'
        f'<button type="submit">{t["change"]}</button></form>'
    )
    return _page(lang, title, body)


def cross_site_page(lang: str, target: str) -> str:
    """`target` must already be a safe relative path (origins.safe_next)."""
    t = TEXT[lang]
    target = html.escape(target)
    body = (
        f'<h1>{t["cross_title"]}</h1><p>{t["cross_body"]}</p><p><a href="{target}">{target}</a></p>'
        f'<p><a href="/">{t["cross_home"]}</a></p>'
    )
    return _page(lang, t["cross_title"], body)


def starting_page(lang: str, progress: Snapshot | None, worker: str | None = None) -> str:
    """`worker`: in a cluster, the worker the browser session is pinned to ("" when none is up)."""
    t = TEXT[lang]
    extra = ""
    if worker is not None:
        line = t["worker"].format(name=worker) if worker else t["no_worker"]
        extra = f'<p class="worker">{html.escape(line)}</p>'
    if progress:
        if progress.state == "failed" and progress.errors:
            extra = f'<p class="err">{html.escape(t["sync_failed"].format(err=progress.errors[-1]))}</p>'
        elif progress.state in ("planning", "running"):
            total = max(progress.bytes_total, 1)
            done = progress.bytes_done
            line = t["sync"].format(
                done=progress.files_done, total=progress.files_total, gb_done=done / 1e9, gb_total=total / 1e9
            )
            current = "".join(f"<li>{html.escape(c.path)}</li>" for c in progress.current)
            extra = (
                f'<p>{html.escape(line)}</p><progress max="{total}" value="{done}"></progress>'
                f'<ul>{current}</ul>'
            )
    return _page(
        lang, t["start_title"], f'<h1>{t["start_title"]}</h1><p>{t["start_body"]}</p>{extra}', refresh=5
    )
