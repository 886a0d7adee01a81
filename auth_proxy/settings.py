"""The proxy's settings, read once from the environment into a frozen dataclass.

Every variable, its default and meaning is listed in docs/auth.md.
"""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from auth_proxy.errors import ConfigError


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
    # Failures are remembered until none came for this long: as long as the longest delay,
    # so that waiting out one delay never wipes the count.
    login_window_s: float = 900.0
    # Password checks (argon2) waiting or running at once; more are answered 429 at once.
    max_pending_logins: int = 8
    # Host names this server answers to besides the built-in ones (auth_proxy/hosts.py).
    allowed_hosts: tuple[str, ...] = ()
    # Reverse proxies whose X-Forwarded-* headers are believed (addresses or networks).
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # A connection must send a request's headers within this many seconds (and an idle
    # keep-alive connection is closed after it).
    header_timeout_s: float = 15.0
    max_client_connections: int = 100
    upstream_connections: int = 256


def _int(env: dict, name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None


def _number(env: dict, name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value <= minimum:
        raise ConfigError(f"{name}={raw!r} must be more than {minimum:g}")
    return value


def _list(env: dict, name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in env.get(name, "").replace(" ", ",").split(",") if item.strip())


def parse_networks(name: str, items: tuple[str, ...]) -> tuple:
    try:
        return tuple(ipaddress.ip_network(item, strict=False) for item in items)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}; expected addresses or networks such as 10.0.0.0/8, 127.0.0.1") from None


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
    return Settings(
        host=host, port=port, upstream=upstream,
        state_dir=Path(env.get("AUTH_PROXY_STATE_DIR", "/data/auth")),
        admin_user=env.get("COMFY_ADMIN_USER", "admin") or "admin",
        admin_password=password,
        session_hours=hours,
        secure_cookies=secure,
        progress_file=Path(env.get("MODEL_SYNC_PROGRESS_FILE",
                                   "/data/models/.model_sync/progress.json")),
        login_max_failures=_int(env, "AUTH_PROXY_LOGIN_MAX_FAILURES", 5),
        max_pending_logins=_int(env, "AUTH_PROXY_MAX_PENDING_LOGINS", 8),
        allowed_hosts=_list(env, "AUTH_PROXY_ALLOWED_HOSTS"),
        trusted_proxies=parse_networks("AUTH_PROXY_TRUSTED_PROXIES", _list(env, "AUTH_PROXY_TRUSTED_PROXIES")),
        header_timeout_s=_number(env, "AUTH_PROXY_HEADER_TIMEOUT", 15.0),
        max_client_connections=_int(env, "AUTH_PROXY_MAX_CLIENT_CONNECTIONS", 100),
        upstream_connections=_int(env, "AUTH_PROXY_UPSTREAM_CONNECTIONS", 256),
    )
