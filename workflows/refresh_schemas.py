"""Capture node schemas from a running ComfyUI into workflows/schemas/ (one JSON file per
source: core.json for ComfyUI's own nodes, <pack>.json for each custom node pack), so
`python -m workflows.validate` can check the bundled workflows without a server.

    COMFYUI_URL=http://127.0.0.1:8188 [COMFY_TOKEN=...] python -m workflows.refresh_schemas

Run it against a server that has exactly the pinned packs (custom_nodes/lock.yaml).
"""
from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

import yaml

from comfy_stack import variables as v
from comfy_stack.env import Env, SettingError
from comfy_stack.files import SHARED, write_json

HERE = Path(__file__).resolve().parent
OUT = HERE / "schemas"


def fetch_object_info(url: str, token: str | None) -> dict:
    req = urllib.request.Request(url.rstrip("/") + "/object_info")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.load(resp)


# Files that ComfyUI's own repository puts in custom_nodes/ (an example node): core.
SHIPPED_WITH_COMFYUI = {"websocket_image_save"}
LOCK = HERE.parent / "custom_nodes" / "lock.yaml"


def split_by_source(info: dict) -> dict[str, dict]:
    """ComfyUI tags each node with python_module: "nodes"/"comfy_extras.*"/"comfy_api_nodes.*"
    for core, "custom_nodes.<pack>" for packs."""
    groups: dict[str, dict] = {}
    for name, schema in info.items():
        module = str(schema.get("python_module", ""))
        group = module.split(".")[1] if module.startswith("custom_nodes.") else "core"
        if group in SHIPPED_WITH_COMFYUI:
            group = "core"
        groups.setdefault(group, {})[name] = schema
    return groups


def check_against_lock(groups: dict[str, dict], lock: dict) -> list[str]:
    """Problems that make a capture unfit to commit: a pack the lock does not pin (its nodes
    would pass validation but not exist in the image), or a pinned pack's required nodes
    missing (it failed to import on the capturing server)."""
    pinned = {p["name"]: p for p in lock["packs"]}
    problems = [f"{g}: not a pinned pack (remove it from the server, or pin it in {LOCK.name})"
                for g in groups if g != "core" and g not in pinned]
    for name, pack in pinned.items():
        missing = [n for n in pack.get("nodes", []) if n not in groups.get(name, {})]
        if missing:
            problems.append(f"{name}: nodes {', '.join(missing)} are not registered (did it fail to import?)")
    return problems


def main() -> int:
    env = Env()
    try:
        url = env.get(v.COMFYUI_URL)
    except SettingError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        info = fetch_object_info(url, env.get(v.COMFY_TOKEN) or None)
    except OSError as exc:
        print(f"cannot read {url}/object_info ({exc}); start ComfyUI with the pinned packs "
              "or set COMFYUI_URL / COMFY_TOKEN", file=sys.stderr)
        return 1
    groups = split_by_source(info)
    problems = check_against_lock(groups, yaml.safe_load(LOCK.read_text(encoding="utf-8")))
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print("nothing written: capture from a server with exactly the pinned packs", file=sys.stderr)
        return 1
    OUT.mkdir(exist_ok=True)
    for group, nodes in sorted(groups.items()):
        write_json(OUT / f"{group}.json", nodes, indent=0, mode=SHARED)
        print(f"{group}: {len(nodes)} nodes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
