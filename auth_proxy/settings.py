"""The proxy's settings, read once from the environment into a frozen dataclass.

Each variable, its default and its doc line are declared once in comfy_stack/variables.py
(the table in docs/auth.md is generated from there); the dataclass's defaults are those
declarations, so that a test or a program building Settings directly gets the same ones.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from auth_proxy.errors import ConfigError
from comfy_jobs import errors as jobs_errors
from comfy_jobs.settings import JobSettings
from comfy_jobs.settings import load_settings as load_job_settings
from comfy_stack import variables as v
from comfy_stack.env import Env
from model_sync import progress


@dataclass(frozen=True)
class Settings:
    host: str = v.AUTH_PROXY_LISTEN.default.host
    port: int = v.AUTH_PROXY_LISTEN.default.port
    upstream: str = v.AUTH_PROXY_UPSTREAM.default
    state_dir: Path = v.AUTH_PROXY_STATE_DIR.default
    admin_user: str = v.COMFY_ADMIN_USER.default
    # A password given by the environment (or its file); None means "keep what the state
    # directory holds, or admin/admin with a forced change on a first start".
    admin_password: str | None = v.COMFY_ADMIN_PASSWORD.default
    session_hours: float = v.AUTH_PROXY_SESSION_HOURS.default
    # "auto": Secure cookies when the request came over HTTPS (X-Forwarded-Proto too).
    secure_cookies: str = v.AUTH_PROXY_SECURE_COOKIES.default
    progress_file: Path = progress.path_for(progress.IMAGE_MODELS_DIR)
    # where `comfyctl serve` records the start's phases (comfy_stack.startup); None: no record
    run_dir: Path | None = None
    # ComfyUI's input folder, where each member's uploads are listed from (auth_proxy/user_lists.py)
    input_dir: Path | None = v.AUTH_PROXY_INPUT_DIR.default
    login_max_failures: int = v.AUTH_PROXY_LOGIN_MAX_FAILURES.default
    # Failures are forgotten this long after their delay has run out; at least as long as
    # the longest delay (ratelimit.py), so that waiting one out never wipes the count.
    login_window_s: float = 900.0
    max_pending_logins: int = v.AUTH_PROXY_MAX_PENDING_LOGINS.default
    allowed_hosts: tuple[str, ...] = v.AUTH_PROXY_ALLOWED_HOSTS.default
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
        v.AUTH_PROXY_TRUSTED_PROXIES.default
    )
    header_timeout_s: float = v.AUTH_PROXY_HEADER_TIMEOUT.default
    max_client_connections: int = v.AUTH_PROXY_MAX_CLIENT_CONNECTIONS.default
    upstream_connections: int = v.AUTH_PROXY_UPSTREAM_CONNECTIONS.default
    relay: str = v.AUTH_PROXY_RELAY.default  # "splice" or "plain" (auth_proxy/splice.py)
    # a member's native prompts waiting at once, unless their account says (0: no limit)
    max_waiting_per_user: int = v.COMFY_JOBS_MAX_WAITING_PER_USER.default
    # The Comfy API v2 and its job ledger (comfy_jobs/settings.py); None: not served.
    jobs: JobSettings | None = None

    @property
    def gateway(self) -> bool:
        """A cluster's gateway: no ComfyUI of its own; the UI is relayed to workers."""
        return self.jobs is not None and self.jobs.gateway


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = Env(environ, error=ConfigError)
    listen = env.get(v.AUTH_PROXY_LISTEN)
    password = env.get(v.COMFY_ADMIN_PASSWORD) or None
    if password is not None and len(password) < 8:
        raise ConfigError("the admin password must have at least 8 characters")
    try:
        jobs = load_job_settings(environ)
    except jobs_errors.ConfigError as exc:
        raise ConfigError(str(exc)) from None
    return Settings(
        host=listen.host,
        port=listen.port,
        jobs=jobs,
        upstream=env.get(v.AUTH_PROXY_UPSTREAM),
        state_dir=env.get(v.AUTH_PROXY_STATE_DIR),
        admin_user=env.get(v.COMFY_ADMIN_USER) or v.COMFY_ADMIN_USER.default,
        admin_password=password,
        session_hours=env.get(v.AUTH_PROXY_SESSION_HOURS),
        secure_cookies=env.get(v.AUTH_PROXY_SECURE_COOKIES),
        progress_file=env.get(v.MODEL_SYNC_PROGRESS_FILE) or Settings.progress_file,
        run_dir=env.get(v.COMFY_RUN_DIR),
        input_dir=env.get(v.AUTH_PROXY_INPUT_DIR),
        login_max_failures=env.get(v.AUTH_PROXY_LOGIN_MAX_FAILURES),
        max_pending_logins=env.get(v.AUTH_PROXY_MAX_PENDING_LOGINS),
        allowed_hosts=env.get(v.AUTH_PROXY_ALLOWED_HOSTS),
        trusted_proxies=env.get(v.AUTH_PROXY_TRUSTED_PROXIES),
        header_timeout_s=env.get(v.AUTH_PROXY_HEADER_TIMEOUT),
        max_client_connections=env.get(v.AUTH_PROXY_MAX_CLIENT_CONNECTIONS),
        upstream_connections=env.get(v.AUTH_PROXY_UPSTREAM_CONNECTIONS),
        relay=env.get(v.AUTH_PROXY_RELAY),
        max_waiting_per_user=env.get(v.COMFY_JOBS_MAX_WAITING_PER_USER),
    )
