"""Every bundled API workflow against the captured /object_info schemas and models.yaml."""
import copy
import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from model_sync.manifest import load_manifest

REPO = Path(__file__).resolve().parents[2]
API = sorted((REPO / "workflows/api").glob("*.json"))


def _validator():
    spec = importlib.util.spec_from_file_location("wf_validate", REPO / "workflows/validate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


V = _validator()
SCHEMAS = V.load_schemas()
MODELS = V.manifest_files()


def test_manifest_parses_with_model_sync_and_has_every_profile():
    m = load_manifest(REPO / "workflows/models.yaml")
    for name in ["smoke", "wan21-t2v-1.3b", "wan21-t2v-14b", "wan21-i2v-14b", "wan21-vace",
                 "wan22-ti2v-5b", "wan22-t2v-a14b", "wan22-i2v-a14b", "qwen-image",
                 "qwen-image-edit", "flux1-dev", "flux1-krea", "flux1-kontext",
                 "hunyuan3d-2.1", "hunyuanvideo"]:
        assert name in m.profiles
    used = {p for f in m.files for p in f.profiles}
    assert set(m.profiles) - used == {"smoke"}, "every profile but smoke needs files"


@pytest.mark.parametrize("path", API, ids=[p.stem for p in API])
def test_api_workflow_validates(path):
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert V.validate(doc, SCHEMAS, MODELS, path.stem) == []
    assert path.stem in load_manifest(REPO / "workflows/models.yaml").profiles
    assert doc["params"], "each bundled workflow carries a parameter map"


def _wan():
    return json.loads((REPO / "workflows/api/wan22-ti2v-5b.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("mutate, expect", [
    (lambda d: d["prompt"]["3"]["inputs"].pop("seed"), "required input 'seed' missing"),
    (lambda d: d["prompt"]["3"]["inputs"].__setitem__("sampler_name", "nope"), "is not one of"),
    (lambda d: d["prompt"]["3"]["inputs"].__setitem__("model", ["99", 0]), "points at no node"),
    (lambda d: d["prompt"]["3"]["inputs"].__setitem__("model", ["4", 0]), "wants MODEL, gets VAE"),
    (lambda d: d["prompt"]["3"]["inputs"].__setitem__("steps", "30"), "wants INT"),
    (lambda d: d["prompt"]["1"]["inputs"].__setitem__("unet_name", "x.safetensors"), "not in models.yaml"),
    (lambda d: d["prompt"]["1"].__setitem__("class_type", "NoSuchNode"), "in no captured schema"),
    (lambda d: d["params"].__setitem__("seed", "3.sed"), "names no input"),
])
def test_validator_catches(mutate, expect):
    doc = copy.deepcopy(_wan())
    mutate(doc)
    assert any(expect in e for e in V.validate(doc, SCHEMAS, MODELS, "wan22-ti2v-5b"))


def test_model_outside_profile_is_caught():
    errs = V.validate(_wan(), SCHEMAS, MODELS, "qwen-image")
    assert any("not in profile" in e for e in errs)


def _convert():
    spec = importlib.util.spec_from_file_location("wf_convert", REPO / "workflows/convert.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("path", API, ids=[p.stem for p in API])
def test_ui_and_api_forms_agree(path):
    ui_path = REPO / "workflows/ui" / path.name
    assert ui_path.is_file(), f"no UI form for {path.name}; run python workflows/convert.py"
    ui = json.loads(ui_path.read_text(encoding="utf-8"))
    api = json.loads(path.read_text(encoding="utf-8"))["prompt"]
    assert _convert().ui_to_api(ui, SCHEMAS) == api


def test_edited_ui_form_disagrees():
    ui = json.loads((REPO / "workflows/ui/wan22-ti2v-5b.json").read_text(encoding="utf-8"))
    api = json.loads((REPO / "workflows/api/wan22-ti2v-5b.json").read_text(encoding="utf-8"))["prompt"]
    next(n for n in ui["nodes"] if n["type"] == "KSampler")["widgets_values"][0] = 7
    assert _convert().ui_to_api(ui, SCHEMAS) != api


def test_every_node_class_is_core_or_a_pinned_pack():
    lock = yaml.safe_load((REPO / "custom_nodes/lock.yaml").read_text(encoding="utf-8"))
    packs = {p["name"] for p in lock["packs"]}
    for path in API:
        for node in json.loads(path.read_text(encoding="utf-8"))["prompt"].values():
            module = SCHEMAS[node["class_type"]].get("python_module", "")
            origin = module.split(".")[1] if module.startswith("custom_nodes.") else "core"
            assert origin == "core" or origin in packs, (path.name, node["class_type"], module)
