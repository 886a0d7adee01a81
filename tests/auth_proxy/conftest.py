"""The proxy and a ComfyUI stand-in, both on real loopback sockets."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
import pytest

from auth_proxy.app import create_app
from auth_proxy.settings import Settings
from auth_proxy.state import Store
from tests.support import fake_comfyui

PASSWORD = "correct-horse-battery"


@dataclass
class Stack:
    proxy: object       # aiohttp TestServer
    upstream: object
    settings: Settings
    token: str
    tmp: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.proxy.port}{path}"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.proxy.port}"

    @property
    def up_state(self) -> dict:
        return self.upstream.app[fake_comfyui.STATE]


@pytest.fixture
async def make_stack(tmp_path, aiohttp_server):
    count = iter(range(100))

    async def make(**overrides) -> Stack:
        base = tmp_path / f"stack{next(count)}"
        upstream = await aiohttp_server(fake_comfyui.create_app(base / "output"))
        settings = Settings(host="127.0.0.1", port=0, upstream=f"http://127.0.0.1:{upstream.port}",
                            state_dir=base / "auth", admin_user="admin", admin_password=PASSWORD,
                            progress_file=base / "progress.json")
        settings = replace(settings, **overrides)
        token = Store(settings.state_dir).create_token("tests")
        proxy = await aiohttp_server(create_app(settings))
        return Stack(proxy, upstream, settings, token, base)
    return make


@pytest.fixture
async def stack(make_stack):
    return await make_stack()


@pytest.fixture
async def http():
    # A cookie jar that keeps cookies for IP hosts, like a browser on 127.0.0.1.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        yield s


async def login(http: aiohttp.ClientSession, stack: Stack, password: str = PASSWORD) -> None:
    async with http.post(stack.url("/login"), json={"username": "admin", "password": password}) as r:
        assert r.status == 200, await r.text()
