"""Fixtures every suite may use; the helpers behind them live in tests/support/."""

import itertools

import pytest


@pytest.fixture
def proxy_for(tmp_path, aiohttp_server):
    """`await proxy_for(upstream_url, **settings)`: the real proxy (auth_proxy.create_app) in
    front of that upstream on loopback, with an API token (tests/support/proxy.py)."""
    from auth_proxy.accounts import open_accounts
    from auth_proxy.app import create_app
    from tests.support.proxy import Proxied, proxy_settings

    count = itertools.count()

    async def start(upstream: str, **overrides) -> Proxied:
        settings = proxy_settings(upstream, tmp_path / f"proxy{next(count)}", **overrides)
        token = open_accounts(settings).create_token("tests")
        return Proxied(await aiohttp_server(create_app(settings)), settings, token)

    return start


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    """A real ComfyUI on CPU for the opt-in tier (skips unless COMFYUI_DIR/COMFYUI_PYTHON)."""
    from tests.support.comfyui import RealComfyUI

    c = RealComfyUI(tmp_path_factory.mktemp("comfy")).start()
    yield c
    c.stop()


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server on loopback for the whole run (tests/support/postgres.py)."""
    from tests.support.postgres import start_postgres

    pg = start_postgres()
    yield pg
    pg.stop()


@pytest.fixture
def pg_url(postgres):
    """The URL of a fresh, empty database on that server."""
    return postgres.new_database()
