"""The API scripts docs/api.md shows, run as they are written (with `requests`, in a child
Python) against the real proxy in front of the ComfyUI stand-in: the bare-ComfyUI script
works against a bare server and is refused by the gate; the gated one works with a token
and, after its one commented alternative line is swapped in, with the admin login."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from dataclasses import replace

import pytest

from auth_proxy.accounts import open_accounts
from auth_proxy.app import create_app
from auth_proxy.settings import Settings
from tests.support import REPO, fake_comfyui, python_env
from tests.support.comfyui import SMOKE_PROMPT

PASSWORD = "api-example-password"


def example(name: str) -> str:
    doc = (REPO / "docs/api.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- api-example: {name} -->\n```python\n(.*?)```", doc, re.S)
    assert match, f"docs/api.md lost its {name} example"
    return match.group(1)


def with_basic_auth(script: str) -> str:
    """The gated script with its Basic-auth line in place of the token line."""
    lines = script.splitlines(keepends=True)
    (token,) = [i for i, line in enumerate(lines) if line.startswith("http.headers[")]
    (basic,) = [i for i, line in enumerate(lines) if line.startswith("# http.auth")]
    lines[basic] = lines[basic][2:]
    del lines[token]
    return "".join(lines)


async def run_script(script: str, cwd, **env) -> tuple[int, str]:
    (cwd / "workflow_api.json").write_text(json.dumps(SMOKE_PROMPT))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        cwd=cwd,
        env=python_env(**env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(errors="replace")


@pytest.fixture
async def servers(tmp_path, aiohttp_server):
    upstream = await aiohttp_server(fake_comfyui.create_app(tmp_path / "server" / "output"))
    settings = replace(
        Settings(),
        host="127.0.0.1",
        port=0,
        upstream=f"http://127.0.0.1:{upstream.port}",
        state_dir=tmp_path / "auth",
        admin_password=PASSWORD,
        progress_file=tmp_path / "none.json",
    )
    token = open_accounts(settings).create_token("api-example")
    proxy = await aiohttp_server(create_app(settings))
    return f"http://127.0.0.1:{upstream.port}", f"http://127.0.0.1:{proxy.port}", token


def pngs(folder) -> list[str]:
    return sorted(p.name for p in folder.glob("*.png") if p.read_bytes().startswith(b"\x89PNG"))


async def test_bare_script_works_bare_and_is_refused_by_the_gate(servers, tmp_path):
    bare_url, proxy_url, _ = servers
    (tmp_path / "bare").mkdir()
    rc, out = await run_script(example("bare"), tmp_path / "bare", COMFY_SERVER=bare_url)
    assert rc == 0, out
    assert pngs(tmp_path / "bare") == ["smoke_00001_.png"]
    (tmp_path / "refused").mkdir()
    rc, out = await run_script(example("bare"), tmp_path / "refused", COMFY_SERVER=proxy_url)
    assert rc != 0 and "KeyError: 'prompt_id'" in out
    assert pngs(tmp_path / "refused") == []


async def test_gated_script_works_with_a_token_and_with_the_admin_login(servers, tmp_path):
    _, proxy_url, token = servers
    for name, script, env in [
        ("token", example("gated"), {"COMFY_TOKEN": token}),
        ("basic", with_basic_auth(example("gated")), {"COMFY_USER": "admin", "COMFY_PASSWORD": PASSWORD}),
    ]:
        (tmp_path / name).mkdir()
        rc, out = await run_script(script, tmp_path / name, COMFY_SERVER=proxy_url, **env)
        assert rc == 0, (name, out)
        assert len(pngs(tmp_path / name)) == 1, name
    (tmp_path / "wrong").mkdir()
    rc, out = await run_script(
        example("gated"), tmp_path / "wrong", COMFY_SERVER=proxy_url, COMFY_TOKEN="nope"
    )
    assert rc != 0 and "401" in out
