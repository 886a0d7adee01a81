"""The proxy's settings, read once from the environment into a frozen dataclass.

Every variable, its default and meaning is listed in docs/auth.md.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from auth_proxy.errors import ConfigError
from comfy_jobs import errors as jobs_errors
from comfy_jobs.settings import JobSettings
from comfy_jobs.settings import load_settings as load_job_settings


@dataclass(frozen=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 8188
    upstream: str = "http://127.0.0.1:8189"
    state_dir: Path = Path("/data/auth")
    admin_user: str = "admin"
    # A password given by the environment (or its file); None means "keep what the state
    # directory holds, or admin/admin with a forced change on a first start".
    admin_password: str | None = None
    session_hours: float = 12.0
    # "auto": Secure cookies when the request came over HTTPS (X-Forwarded-Proto too).
    secure_cookies: str = "auto"
    progress_file: Path = Path("/data/models/.model_sync/progress.json")
    login_max_failures: int = 5
    login_window_s: float = 300.0
    # The Comfy API v2 and its job ledger (comfy_jobs/settings.py); None: not served.
    jobs: JobSettings | None = None


def _int(env: dict, name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"AUTH_PROXY_LISTEN={value!r}: expected HOST:PORT, e.g. 0.0.0.0:8188")
    return host.strip("[]") or "0.0.0.0", int(port)


def load_settings(environ: dict | None = None) -> Settings:
    env = dict(os.environ if environ is None else environ)
    host, port = parse_listen(env.get("AUTH_PROXY_LISTEN", "0.0.0.0:8188"))
    upstream = env.get("AUTH_PROXY_UPSTREAM", "http://127.0.0.1:8189").rstrip("/")
    parts = urlsplit(upstream)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"AUTH_PROXY_UPSTREAM={upstream!r}: expected a URL like http://127.0.0.1:8189")
    password = env.get("COMFY_ADMIN_PASSWORD") or None
    pw_file = env.get("COMFY_ADMIN_PASSWORD_FILE")
    if password and pw_file:
        raise ConfigError("set COMFY_ADMIN_PASSWORD or COMFY_ADMIN_PASSWORD_FILE, not both")
    if pw_file:
        try:
            password = Path(pw_file).read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise ConfigError(f"COMFY_ADMIN_PASSWORD_FILE={pw_file}: cannot read it ({exc.strerror})") from None
        if password is None:
            raise ConfigError(f"COMFY_ADMIN_PASSWORD_FILE={pw_file} is empty")
    if password is not None and len(password) < 8:
        raise ConfigError("the admin password must have at least 8 characters")
    secure = env.get("AUTH_PROXY_SECURE_COOKIES", "auto").lower()
    if secure not in ("auto", "always", "never"):
        raise ConfigError(f"AUTH_PROXY_SECURE_COOKIES={secure!r}: expected auto, always or never")
    try:
        hours = float(env.get("AUTH_PROXY_SESSION_HOURS", "12"))
    except ValueError:
        raise ConfigError("AUTH_PROXY_SESSION_HOURS must be a number of hours") from None
    try:
        jobs = load_job_settings(env)
    except jobs_errors.ConfigError as exc:
        raise ConfigError(str(exc)) from None
    return Settings(
        host=host, port=port, upstream=upstream, jobs=jobs,
        state_dir=Path(env.get("AUTH_PROXY_STATE_DIR", "/data/auth")),
        admin_user=env.get("COMFY_ADMIN_USER", "admin") or "admin",
        admin_password=password,
        session_hours=hours,
        secure_cookies=secure,
        progress_file=Path(env.get("MODEL_SYNC_PROGRESS_FILE",
                                   "/data/models/.model_sync/progress.json")),
        login_max_failures=_int(env, "AUTH_PROXY_LOGIN_MAX_FAILURES", 5),
    )
