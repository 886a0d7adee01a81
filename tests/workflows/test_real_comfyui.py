"""Opt-in tier: a real ComfyUI's own prompt validation accepts every bundled workflow whose
node classes it has (all of them on a server with the pinned packs), and its own frontend,
in headless Chromium, turns every UI form into the bundled API form.

POST /prompt validates the whole graph before queueing (classes, links, types, ranges,
COMBO values against the files present, each node's VALIDATE_INPUTS such as LoadImage's
check that the image exists), so every model file of the manifest is created as an empty
placeholder in the folders extra_model_paths.yaml maps, and each upload input (any input
the captured schema flags image_upload, video_upload or audio_upload) gets a file of the name
the workflow carries: a real PNG, a real WAV, and for a video some bytes (LoadVideo's own
check, like LoadAudio's, asks only that the file exists). The queued prompts then fail at
their first loader (an empty file is no model) within milliseconds, which is not what is
tested here.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
import yaml

from comfyctl import model_paths
from tests.support import REPO
from tests.support.fake_comfyui import tiny_png, tiny_wav
from tests.workflows.test_workflows import SCHEMAS, V

pytestmark = [pytest.mark.comfyui, pytest.mark.timeout(300)]


def post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            text = r.read()
            return r.status, json.loads(text) if text.strip() else {}
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def upload_placeholder(name: str) -> bytes:
    if name.endswith(".png"):
        return tiny_png()
    if name.endswith(".wav"):
        return tiny_wav()
    return b"placeholder: ComfyUI's validation checks only that the file exists"


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
        for node in json.loads(wf.read_text())["prompt"].values():
            spec = SCHEMAS[node["class_type"]]["input"]
            for name, value in node["inputs"].items():
                if isinstance(value, str) and V.is_upload(
                    {**spec.get("required", {}), **spec.get("optional", {})}[name]
                ):
                    (data / "input" / value).write_bytes(upload_placeholder(value))
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
    core_only = [
        wf.name
        for wf in (REPO / "workflows/api").glob("*.json")
        if {n["class_type"] for n in json.loads(wf.read_text())["prompt"].values()} <= core
    ]
    assert set(core_only) <= set(accepted), f"accepted {accepted}; skipped {skipped}"
    print(f"accepted {len(accepted)}: {', '.join(accepted)}; skipped: {'; '.join(skipped) or 'none'}")


def frontend_prompts(url: str, workflows: dict[str, dict]) -> dict[str, dict]:
    """Each UI workflow loaded into ComfyUI's own frontend (headless Chromium), and the API
    graph the frontend builds from it to queue (app.graphToPrompt)."""
    from playwright.sync_api import sync_playwright

    from tests.support import CHROMIUM_ARGS, chromium_path

    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url + "/")
            page.wait_for_function("window.app && window.app.graph && window.app.canvas", timeout=120000)
            for name, ui in workflows.items():
                out[name] = page.evaluate(
                    """async (ui) => {
                    await window.app.loadGraphData(ui, true, false);
                    return (await window.app.graphToPrompt()).output;
                }""",
                    ui,
                )
        finally:
            browser.close()
    return out


@pytest.mark.browser
def test_frontend_turns_every_ui_form_into_its_api_form(server):
    """The UI forms are what the editor itself would save: loaded into the real frontend,
    each one queues exactly the bundled API graph (same classes, values and links). The
    frontend also sends the values of widgets it draws itself (LoadAudio's player,
    the 3D viewers' `image`), which are no node input and which ComfyUI ignores."""
    names = sorted(p.stem for p in (REPO / "workflows/api").glob("*.json"))
    ui = {n: json.loads((REPO / "workflows/ui" / f"{n}.json").read_text()) for n in names}
    built = frontend_prompts(server.url, ui)
    mismatched, frontend_only = {}, set()

    def node_inputs(node: dict) -> dict:
        spec = SCHEMAS[node["class_type"]]["input"]
        known = {**spec.get("required", {}), **spec.get("optional", {})}
        frontend_only.update(f"{node['class_type']}.{k}" for k in node["inputs"] if k not in known)
        return {k: v for k, v in node["inputs"].items() if k in known}

    for n in names:
        api = json.loads((REPO / "workflows/api" / f"{n}.json").read_text())["prompt"]
        got = {
            nid: {"class_type": node["class_type"], "inputs": node_inputs(node)}
            for nid, node in built[n].items()
        }
        if got != api:
            mismatched[n] = {
                nid: {"frontend": got.get(nid), "bundled": api.get(nid)}
                for nid in set(got) | set(api)
                if got.get(nid) != api.get(nid)
            }
    assert not mismatched, json.dumps(mismatched, indent=1)[:6000]
    assert frontend_only <= {"LoadAudio.audioUI", "SaveGLB.image", "Preview3D.image"}, frontend_only
    print(
        f"the frontend built all {len(names)} API graphs from their UI forms "
        f"(its own widgets left aside: {', '.join(sorted(frontend_only))})"
    )
