"""Opt-in tier: a real ComfyUI's own prompt validation accepts every bundled workflow whose
node classes it has (all of them on a server with the pinned packs).

POST /prompt validates the whole graph before queueing (classes, links, types, ranges,
COMBO values against the files present, each node's VALIDATE_INPUTS such as LoadImage's
check that the image exists), so every model file of the manifest is created as an empty
placeholder in the folders extra_model_paths.yaml maps, and each upload input gets a real
PNG of the name the workflow carries. The queued prompts then fail at their first loader
(an empty file is no model) within milliseconds, which is not what is tested here.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
import yaml

from comfyctl import model_paths
from tests.support import REPO
from tests.support.fake_comfyui import tiny_png

pytestmark = [pytest.mark.comfyui, pytest.mark.timeout(300)]


def post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            text = r.read()
            return r.status, json.loads(text) if text.strip() else {}
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.support.comfyui import RealComfyUI

    data = tmp_path_factory.mktemp("validate")
    models = data / "models"
    for f in yaml.safe_load((REPO / "workflows/models.yaml").read_text())["files"]:
        placeholder = models / f["folder"] / f["path"]
        placeholder.parent.mkdir(parents=True, exist_ok=True)
        placeholder.touch()
    config = model_paths.write(models, data / "extra_model_paths.yaml")
    (data / "input").mkdir()
    for wf in (REPO / "workflows/api").glob("*.json"):
        prompt = json.loads(wf.read_text())["prompt"]
        for node in prompt.values():
            value = node["inputs"].get("image")
            if isinstance(value, str) and value.endswith(".png"):
                (data / "input" / value).write_bytes(tiny_png())
    c = RealComfyUI(data, ("--extra-model-paths-config", str(config))).start()
    try:
        with urllib.request.urlopen(c.url + "/object_info", timeout=60) as r:
            c.classes = set(json.load(r))
        yield c
    finally:
        c.stop()


def test_real_comfyui_accepts_every_bundled_workflow(server):
    accepted, skipped, rejected = [], [], {}
    for wf in sorted((REPO / "workflows/api").glob("*.json")):
        prompt = json.loads(wf.read_text())["prompt"]
        absent = {n["class_type"] for n in prompt.values()} - server.classes
        if absent:
            skipped.append(f"{wf.name} (server lacks {', '.join(sorted(absent))})")
            continue
        status, body = post(server.url + "/prompt", {"prompt": prompt})
        if status == 200 and not body.get("node_errors"):
            accepted.append(wf.name)
        else:
            rejected[wf.name] = body
        post(server.url + "/queue", {"clear": True})
    assert not rejected, json.dumps(rejected, indent=1)[:4000]
    core = set(json.loads((REPO / "workflows/schemas/core.json").read_text()))
    core_only = [wf.name for wf in (REPO / "workflows/api").glob("*.json")
                 if {n["class_type"] for n in json.loads(wf.read_text())["prompt"].values()} <= core]
    assert set(core_only) <= set(accepted), f"accepted {accepted}; skipped {skipped}"
    print(f"accepted {len(accepted)}: {', '.join(accepted)}; skipped: {'; '.join(skipped) or 'none'}")
