"""The real proxy in front of an upstream (a ComfyUI stand-in or a real ComfyUI) with an API
token: what the `proxy_for` fixture (tests/conftest.py) starts."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from auth_proxy.settings import Settings

PASSWORD = "correct-horse-battery"


def proxy_settings(upstream: str, base: Path, **overrides) -> Settings:
    """Loopback, an ephemeral port, state under `base`, the admin password set (no forced
    change) and no model sync in progress."""
    settings = Settings(host="127.0.0.1", port=0, upstream=upstream, state_dir=base / "auth",
                        admin_user="admin", admin_password=PASSWORD, progress_file=base / "progress.json")
    return replace(settings, **overrides)


@dataclass
class Proxied:
    server: object        # aiohttp's TestServer running the proxy
    settings: Settings
    token: str            # an API token the proxy knows

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"   # type: ignore[attr-defined]

    def url(self, path: str = "") -> str:
        return self.origin + path
