"""Opt-in tier: `comfyctl run` of the smoke workflow against a real ComfyUI, bare and
through the proxy with a token (COMFYUI_DIR, COMFYUI_PYTHON)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from auth_proxy.app import create_app
from auth_proxy.settings import Settings
from auth_proxy.state import Store
from comfyctl import run as runmod
from tests.comfyctl.test_run import args

pytestmark = pytest.mark.comfyui


async def test_smoke_bare_and_through_the_proxy(comfy, tmp_path, aiohttp_server):
    bare = await runmod.run(args(tmp_path / "bare", comfy.url, param=["width=48"]))
    settings = replace(Settings(), host="127.0.0.1", port=0, upstream=comfy.url, state_dir=tmp_path / "auth",
                       admin_password="real-run-password", progress_file=tmp_path / "none.json")
    token = Store(settings.state_dir).create_token("run")
    proxy = await aiohttp_server(create_app(settings))
    proxied = await runmod.run(args(tmp_path / "proxied", f"http://127.0.0.1:{proxy.port}", token=token))
    for result in (bare, proxied):
        (path,) = [Path(p) for p in result["outputs"]]
        assert path.read_bytes().startswith(b"\x89PNG") and path.parent.name == "smoke"
