"""The real proxy in front of an upstream (a ComfyUI stand-in or a real ComfyUI) with an API
token: what the `proxy_for` fixture (tests/conftest.py) starts."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp

from auth_proxy.settings import Settings

PASSWORD = "correct-horse-battery"


def proxy_settings(upstream: str, base: Path, **overrides) -> Settings:
    """Loopback, an ephemeral port, state under `base`, the admin password set (no forced
    change) and no model sync in progress."""
    settings = Settings(
        host="127.0.0.1",
        port=0,
        upstream=upstream,
        state_dir=base / "auth",
        admin_user="admin",
        admin_password=PASSWORD,
        progress_file=base / "progress.json",
    )
    return replace(settings, **overrides)


@dataclass
class Proxied:
    server: object  # aiohttp's TestServer running the proxy
    settings: Settings
    token: str  # an API token the proxy knows

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"  # type: ignore[attr-defined]

    def url(self, path: str = "") -> str:
        return self.origin + path


def basic(user: str, password: str) -> str:
    """An `Authorization` value for HTTP Basic."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def login(http: aiohttp.ClientSession, proxy, password: str = PASSWORD, user: str = "admin") -> None:
    """Log `http` in (as the admin unless `user` says) through `proxy` (anything with
    `.url(path)`), as a browser's login form would, keeping the session cookie in its jar."""
    async with http.post(proxy.url("/login"), json={"username": user, "password": password}) as r:
        assert r.status == 200, await r.text()


def add_account(settings: Settings, name: str, role: str = "member") -> Account:
    """An account ready to use, as the admin adds it and its person sets their password at
    the first login (`<name>-secret-1`), with an API token named "tests"."""
    from auth_proxy.accounts import open_accounts

    accounts = open_accounts(settings)
    try:
        accounts.add(name, role)
        password = f"{name}-secret-1"
        accounts.change_password(name, password)
        token = accounts.create_token("tests", name)
    finally:
        accounts.close()
    return Account(name, password, token)


@dataclass(frozen=True)
class Account:
    name: str
    password: str
    token: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def basic(self) -> dict[str, str]:
        return {"Authorization": basic(self.name, self.password)}


def from_address(address: str) -> aiohttp.ClientSession:
    """A client whose connections come from `address` (any of 127.0.0.0/8 is this machine),
    so that tests can play many clients."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(local_addr=(address, 0), limit=0),
        timeout=aiohttp.ClientTimeout(total=120),
    )


async def send_raw(port: int, data: bytes, limit: int = 200, timeout: float = 5.0) -> bytes:
    """Write `data` as it is on a new loopback connection and return what comes back (up
    to `limit` bytes, or until the server closes or `timeout` passes): for requests no
    HTTP client would send."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = b""
    try:
        writer.write(data)
        await writer.drain()
        while len(received) < limit:
            chunk = await asyncio.wait_for(reader.read(limit - len(received)), timeout)
            if not chunk:
                break
            received += chunk
    except (asyncio.TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()
    return received
