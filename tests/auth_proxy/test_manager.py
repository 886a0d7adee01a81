"""ComfyUI-Manager's published weak spots at the pinned version, behind the gate (see
docs/security.md): its config.ini is a userdata file (CVE-2025-67303), and query values it
writes into that file can start a new line with a CR (CVE-2026-22777)."""

from __future__ import annotations

import pytest
from yarl import URL

CONFIG = "[default]\nsecurity_level = normal\nnetwork_mode = public\n"
MANAGER_FILE_CALLS = [
    ("GET", "/api/userdata/ComfyUI-Manager%2Fconfig.ini"),
    ("POST", "/api/userdata/ComfyUI-Manager%2Fconfig.ini?overwrite=true"),
    ("POST", "/userdata/comfyui-manager%2Fconfig.ini"),
    ("GET", "/api/userdata/workflows%2F..%2FComfyUI-Manager%2Fconfig.ini"),
    ("GET", "/api/userdata/workflows%252F..%252FComfyUI-Manager%252Fconfig.ini"),
    ("POST", "/api/userdata/workflows%2Fa.json/move/ComfyUI-Manager%2Fconfig.ini"),
    ("DELETE", "/api/userdata/ComfyUI-Manager%2Fsnapshots%2Fx.json"),
    ("GET", "/api/userdata?dir=ComfyUI-Manager&recurse=true"),
    ("GET", "/api/v2/userdata?path=ComfyUI-Manager%2Fsnapshots"),
]


@pytest.mark.parametrize("method,path", MANAGER_FILE_CALLS, ids=[f"{m} {p}" for m, p in MANAGER_FILE_CALLS])
async def test_managers_files_are_not_reachable_through_userdata(stack, http, method, path):
    config = stack.up_state["user"] / "ComfyUI-Manager" / "config.ini"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(CONFIG)
    (stack.up_state["user"] / "workflows").mkdir(exist_ok=True)
    (stack.up_state["user"] / "workflows" / "a.json").write_text("{}")
    async with http.request(
        method,
        URL(stack.url(path), encoded=True),
        data=b"[default]\nsecurity_level = weak\n",
        headers={"Authorization": f"Bearer {stack.token}"},
    ) as r:
        assert r.status == 403, await r.text()
    assert config.read_text() == CONFIG
    assert not any("ComfyUI-Manager" in hit or "comfyui-manager" in hit for hit in stack.up_state["hits"])


@pytest.mark.parametrize(
    "value",
    [
        "cache%0Dsecurity_level%20%3D%20weak",
        "cache%0Asecurity_level=weak",
        "cache%0D%0Asecurity_level=weak",
        "x%00",
    ],
)
async def test_no_line_breaks_reach_managers_config_setters(stack, http, value):
    auth = {"Authorization": f"Bearer {stack.token}"}
    async with http.get(
        URL(stack.url(f"/api/manager/db_mode?value={value}"), encoded=True), headers=auth
    ) as r:
        assert r.status == 400 and "control characters" in (await r.json())["error"]
    async with http.get(stack.url("/api/manager/db_mode?value=cache"), headers=auth) as r:
        assert r.status == 200
    assert stack.up_state["manager_calls"] == ["/api/manager/db_mode"]
