"""The proxy and a ComfyUI stand-in, both in this process on real loopback sockets, for
the suites that drive the proxy's app (the gate's, the v2 API's)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from auth_proxy.app import create_app
from auth_proxy.settings import Settings
from auth_proxy.state import Store
from tests.support import fake_comfyui

PASSWORD = "correct-horse-battery"


async def start_proxy_stack(aiohttp_server, base: Path, upstream_delay: float = 0.0, **overrides):
    """(proxy server, upstream server, settings, a Bearer token) under `base`."""
    upstream = await aiohttp_server(fake_comfyui.create_app(base / "output", delay=upstream_delay))
    settings = Settings(host="127.0.0.1", port=0, upstream=f"http://127.0.0.1:{upstream.port}",
                        state_dir=base / "auth", admin_user="admin", admin_password=PASSWORD,
                        progress_file=base / "progress.json")
    settings = replace(settings, **overrides)
    token = Store(settings.state_dir).create_token("tests")
    proxy = await aiohttp_server(create_app(settings))
    return proxy, upstream, settings, token
