"""Capture node schemas from a running ComfyUI into workflows/schemas/ (one JSON file per
source: core.json for ComfyUI's own nodes, <pack>.json for each custom node pack), so
`python -m workflows.validate` can check the bundled workflows without a server.

    COMFYUI_URL=http://127.0.0.1:8188 [COMFY_TOKEN=...] python -m workflows.refresh_schemas

Run it against a server that has exactly the pinned packs (custom_nodes/lock.yaml), with
the image's torch, torchvision and torchaudio, started just before: the capture is refused
when the server's log shows a core module or a pack that failed to import.
"""

from __future__ import annotations

import json
import re
import sys
import urllib.request
from pathlib import Path

import yaml

from comfy_stack import variables as v
from comfy_stack.env import Env, SettingError
from comfy_stack.files import SHARED, write_json

HERE = Path(__file__).resolve().parent
OUT = HERE / "schemas"


def fetch_json(url: str, route: str, token: str | None):
    req = urllib.request.Request(url.rstrip("/") + route)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.load(resp)


def fetch_object_info(url: str, token: str | None) -> dict:
    return fetch_json(url, "/object_info", token)


def fetch_log(url: str, token: str | None) -> str:
    """The server's own start-up log: ComfyUI keeps its last log lines for /internal/logs."""
    return "".join(e.get("m", "") for e in fetch_json(url, "/internal/logs/raw", token)["entries"])


# ComfyUI logs these once every node module has been loaded; the summary of the modules
# that failed comes after them, so a log that still holds one of them holds the summary.
END_OF_NODE_LOADING = ("Import times for custom nodes:", "Skipping loading of custom nodes")


def failed_imports(log: str) -> list[str]:
    """Problems the server's log reports: a core module (comfy_extras/, comfy_api_nodes/)
    that failed to import leaves its nodes out of /object_info without an error anywhere
    else (how the audio nodes went missing when torchaudio could not load), and so does a
    pack that failed. ComfyUI sums up core failures as `IMPORT FAILED: nodes_x.py` and
    marks packs `(IMPORT FAILED): <path>` in its import-time list."""
    if not any(marker in log for marker in END_OF_NODE_LOADING):
        return [
            "the server's log no longer reaches back to its start (it keeps its last 300 "
            "lines): restart ComfyUI and capture at once, so a module that failed to import is seen"
        ]
    problems = [
        f"core module {m.strip()} failed to import (see the server's log; a missing "
        "dependency such as torchaudio drops every node it defines)"
        for m in re.findall(r"^IMPORT FAILED: (.+)$", log, re.M)
    ]
    problems += [
        f"{Path(m.strip()).name}: the pack failed to import (see the server's log)"
        for m in re.findall(r"\(IMPORT FAILED\): (.+)$", log, re.M)
    ]
    return problems


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
    problems = [
        f"{g}: not a pinned pack (remove it from the server, or pin it in {LOCK.name})"
        for g in groups
        if g != "core" and g not in pinned
    ]
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
    token = env.get(v.COMFY_TOKEN) or None
    try:
        info = fetch_object_info(url, token)
        log = fetch_log(url, token)
    except (OSError, ValueError, KeyError) as exc:
        print(
            f"cannot read {url}/object_info and /internal/logs/raw ({exc}); start ComfyUI "
            "with the pinned packs or set COMFYUI_URL / COMFY_TOKEN",
            file=sys.stderr,
        )
        return 1
    groups = split_by_source(info)
    problems = failed_imports(log)
    problems += check_against_lock(groups, yaml.safe_load(LOCK.read_text(encoding="utf-8")))
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
