"""Every bundled API workflow against the captured /object_info schemas and models.yaml."""

import copy
import json

import pytest
import yaml

from model_sync.manifest import load_manifest
from tests.support import REPO
from tests.support.threaded_server import QuietHandler, ThreadedServer
from workflows import convert, refresh_schemas
from workflows import validate as V

API = sorted((REPO / "workflows/api").glob("*.json"))
SCHEMAS = V.load_schemas()
MODELS = V.manifest_files()


def test_manifest_parses_with_model_sync_and_has_every_profile():
    m = load_manifest(REPO / "workflows/models.yaml")
    for name in [
        "smoke",
        "wan21-t2v-1.3b",
        "wan21-t2v-14b",
        "wan21-i2v-14b",
        "wan21-vace",
        "wan22-ti2v-5b",
        "wan22-t2v-a14b",
        "wan22-i2v-a14b",
        "qwen-image",
        "qwen-image-edit",
        "flux1-dev",
        "flux1-krea",
        "flux1-kontext",
        "hunyuan3d-2.1",
        "hunyuanvideo",
        "wan22-fun-camera-a14b",
        "wan22-fun-control-a14b",
        "wan22-fun-control-5b",
        "wan22-fun-inpaint-a14b",
        "wan22-fun-inpaint-5b",
        "wan22-s2v-14b",
        "hunyuanimage-2.1",
        "hunyuan3d-2.0",
        "wan21-vace-1.3b",
        "wan21-fun-inp-1.3b",
    ]:
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


@pytest.mark.parametrize(
    "mutate, expect",
    [
        (lambda d: d["prompt"]["3"]["inputs"].pop("seed"), "required input 'seed' missing"),
        (lambda d: d["prompt"]["3"]["inputs"].__setitem__("sampler_name", "nope"), "is not one of"),
        (lambda d: d["prompt"]["3"]["inputs"].__setitem__("model", ["99", 0]), "points at no node"),
        (lambda d: d["prompt"]["3"]["inputs"].__setitem__("model", ["4", 0]), "wants MODEL, gets VAE"),
        (lambda d: d["prompt"]["3"]["inputs"].__setitem__("steps", "30"), "wants INT"),
        (
            lambda d: d["prompt"]["1"]["inputs"].__setitem__("unet_name", "x.safetensors"),
            "not in models.yaml",
        ),
        (lambda d: d["prompt"]["1"].__setitem__("class_type", "NoSuchNode"), "in no captured schema"),
        (lambda d: d["params"].__setitem__("seed", "3.sed"), "names no input"),
    ],
)
def test_validator_catches(mutate, expect):
    doc = copy.deepcopy(_wan())
    mutate(doc)
    assert any(expect in e for e in V.validate(doc, SCHEMAS, MODELS, "wan22-ti2v-5b"))


def test_model_outside_profile_is_caught():
    errs = V.validate(_wan(), SCHEMAS, MODELS, "qwen-image")
    assert any("not in profile" in e for e in errs)


@pytest.mark.parametrize("path", API, ids=[p.stem for p in API])
def test_ui_and_api_forms_agree(path):
    ui_path = REPO / "workflows/ui" / path.name
    assert ui_path.is_file(), f"no UI form for {path.name}; run python -m workflows.convert"
    ui = json.loads(ui_path.read_text(encoding="utf-8"))
    api = json.loads(path.read_text(encoding="utf-8"))["prompt"]
    assert convert.ui_to_api(ui, SCHEMAS) == api


def test_edited_ui_form_disagrees():
    ui = json.loads((REPO / "workflows/ui/wan22-ti2v-5b.json").read_text(encoding="utf-8"))
    api = json.loads((REPO / "workflows/api/wan22-ti2v-5b.json").read_text(encoding="utf-8"))["prompt"]
    next(n for n in ui["nodes"] if n["type"] == "KSampler")["widgets_values"][0] = 7
    assert convert.ui_to_api(ui, SCHEMAS) != api


def test_every_node_class_is_core_or_a_pinned_pack():
    lock = yaml.safe_load((REPO / "custom_nodes/lock.yaml").read_text(encoding="utf-8"))
    packs = {p["name"] for p in lock["packs"]}
    for path in API:
        for node in json.loads(path.read_text(encoding="utf-8"))["prompt"].values():
            module = SCHEMAS[node["class_type"]].get("python_module", "")
            origin = module.split(".")[1] if module.startswith("custom_nodes.") else "core"
            assert origin == "core" or origin in packs, (path.name, node["class_type"], module)


def _hy3d():
    return json.loads((REPO / "workflows/api/hunyuan3d-2.1.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "mutate, expect",
    [
        # pack loaders name their folder nowhere in the input name: diffusion_models / vae
        (
            lambda d: d["prompt"]["2"]["inputs"].__setitem__("model", "hunyuan3d-vae-v2-1/model.fp16.ckpt"),
            "not in models.yaml",
        ),
        (
            lambda d: d["prompt"]["3"]["inputs"].__setitem__(
                "model_name", "hunyuan3d-dit-v2-1/model.fp16.ckpt"
            ),
            "not in models.yaml",
        ),
        # the pack's own upload input (flagged image_upload in its schema) needs a parameter
        (lambda d: d["params"].pop("image"), "an upload input needs a parameter name"),
        (lambda d: d["prompt"]["4"]["inputs"].__setitem__("mc_algo", "marching"), "is not one of"),
        (
            lambda d: d["prompt"]["7"]["inputs"].__setitem__("model_file", ["5", 0]),
            "wants STRING, gets TRIMESH",
        ),
    ],
)
def test_validator_catches_pack_workflow_mistakes(mutate, expect):
    doc = copy.deepcopy(_hy3d())
    mutate(doc)
    assert any(expect in e for e in V.validate(doc, SCHEMAS, MODELS, "hunyuan3d-2.1"))


def test_ui_form_carries_the_widgets_the_frontend_adds():
    """A seed gets the frontend's control widget even on pack nodes whose schema predates
    `control_after_generate`, and an upload input gets its upload button's entry."""
    ui = json.loads((REPO / "workflows/ui/hunyuan3d-2.1.json").read_text(encoding="utf-8"))
    by_type = {n["type"]: n for n in ui["nodes"]}
    assert by_type["Hy3DMeshGenerator"]["widgets_values"] == [
        "hunyuan3d-dit-v2-1/model.fp16.ckpt",
        25,
        5.0,
        42,
        "fixed",
        "sdpa",
    ]
    assert by_type["Hy3D21LoadImageWithTransparency"]["widgets_values"] == ["example.png", "image"]


def test_schema_capture_is_refused_unless_it_matches_the_lock():
    r = refresh_schemas
    lock = yaml.safe_load((REPO / "custom_nodes/lock.yaml").read_text(encoding="utf-8"))
    info = {name: dict(schema) for name, schema in SCHEMAS.items()}
    info["SaveImageWebsocket"] = {"python_module": "custom_nodes.websocket_image_save"}
    groups = r.split_by_source(info)
    assert "SaveImageWebsocket" in groups["core"]  # ComfyUI ships it in custom_nodes/
    assert r.check_against_lock(groups, lock) == []
    info["Stray"] = {"python_module": "custom_nodes.ComfyUI-Unpinned"}
    info.pop("VHS_VideoCombine")
    problems = r.check_against_lock(r.split_by_source(info), lock)
    assert any(p.startswith("ComfyUI-Unpinned: not a pinned pack") for p in problems)
    assert any("ComfyUI-VideoHelperSuite: nodes VHS_VideoCombine are not registered" in p for p in problems)


def test_captured_schemas_cover_every_pinned_pack_with_nodes():
    lock = yaml.safe_load((REPO / "custom_nodes/lock.yaml").read_text(encoding="utf-8"))
    for pack in lock["packs"]:
        if pack.get("nodes"):
            assert (REPO / "workflows/schemas" / f"{pack['name']}.json").is_file(), pack["name"]


def test_capture_is_refused_when_the_servers_log_shows_a_failed_import():
    """Logs recorded from the pinned ComfyUI with all pinned packs (paths shown as in the
    image): once with torchaudio and gguf made unimportable, once healthy."""
    r = refresh_schemas
    failed = r.failed_imports((REPO / "tests/data/comfyui_log_import_failed.txt").read_text(encoding="utf-8"))
    assert [p for p in failed if p.startswith("core module")] == [
        "core module nodes_audio.py failed to import (see the server's log; a missing dependency "
        "such as torchaudio drops every node it defines)",
        "core module nodes_audio_encoder.py failed to import (see the server's log; a missing "
        "dependency such as torchaudio drops every node it defines)",
    ]
    assert sorted(p.split(":")[0] for p in failed if "the pack failed" in p) == [
        "ComfyUI-GGUF",
        "ComfyUI-Hunyuan3d-2-1",
        "ComfyUI-WanVideoWrapper",
    ]
    assert r.failed_imports((REPO / "tests/data/comfyui_log_healthy.txt").read_text(encoding="utf-8")) == []
    # a log whose start-up has scrolled out of ComfyUI's 300-line buffer proves nothing
    assert (
        "restart ComfyUI and capture at once"
        in r.failed_imports("got prompt\nPrompt executed in 0.01 seconds\n")[0]
    )


def test_refresh_writes_nothing_when_a_core_module_failed(tmp_path, monkeypatch, capsys):
    """The whole script against a server answering /object_info with the committed capture
    minus the audio modules' nodes, and /internal/logs/raw with the recorded failure."""
    info = {
        k: v
        for k, v in SCHEMAS.items()
        if not v.get("python_module", "").startswith("comfy_extras.nodes_audio")
    }
    log = (REPO / "tests/data/comfyui_log_import_failed.txt").read_text(encoding="utf-8")
    answers = {
        "/object_info": info,
        "/internal/logs/raw": {"entries": [{"t": "", "m": line} for line in log.splitlines(True)]},
    }

    class Handler(QuietHandler):
        def do_GET(self):
            body = json.dumps(answers[self.path]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    r = refresh_schemas
    monkeypatch.setattr(r, "OUT", tmp_path / "schemas")
    with ThreadedServer(Handler) as server:
        monkeypatch.setenv("COMFYUI_URL", server.url)
        assert r.main() == 1
    err = capsys.readouterr().err
    assert "core module nodes_audio.py failed to import" in err and "nothing written" in err
    assert not (tmp_path / "schemas").exists()


def test_capture_has_the_audio_nodes():
    """The committed capture ran with the image's torch stack (torchaudio 2.8.0 importable)."""
    for name in ("LoadAudio", "SaveAudio", "AudioEncoderLoader", "AudioEncoderEncode"):
        assert SCHEMAS[name]["python_module"].startswith("comfy_extras.nodes_audio"), name


def _s2v():
    return json.loads((REPO / "workflows/api/wan22-s2v-14b.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "mutate, expect",
    [
        # LoadAudio's input is an upload (audio_upload) like LoadImage's: it needs a parameter
        (lambda d: d["params"].pop("audio"), "node 58.audio: an upload input needs a parameter name"),
        (
            lambda d: d["prompt"]["57"]["inputs"].__setitem__("audio_encoder_name", "wav2vec2.safetensors"),
            "not in models.yaml",
        ),
        (lambda d: d["prompt"]["56"]["inputs"].__setitem__("audio", ["52", 0]), "wants AUDIO, gets IMAGE"),
    ],
)
def test_validator_catches_audio_workflow_mistakes(mutate, expect):
    doc = copy.deepcopy(_s2v())
    mutate(doc)
    assert any(expect in e for e in V.validate(doc, SCHEMAS, MODELS, "wan22-s2v-14b"))


def test_ui_form_carries_the_audio_and_linked_widgets_as_the_frontend_saves_them():
    """As in the official templates: LoadAudio's player and upload button as two nulls, and a
    widget fed by a link keeps a socket named after it and a value in widgets_values."""
    ui = json.loads((REPO / "workflows/ui/wan22-s2v-14b.json").read_text(encoding="utf-8"))
    assert next(n for n in ui["nodes"] if n["type"] == "LoadAudio")["widgets_values"] == [
        "speech.wav",
        None,
        None,
    ]
    cam = json.loads((REPO / "workflows/ui/wan22-fun-camera-a14b.json").read_text(encoding="utf-8"))
    node = next(n for n in cam["nodes"] if n["type"] == "WanCameraImageToVideo")
    assert [i["widget"]["name"] for i in node["inputs"] if "widget" in i] == ["width", "height", "length"]
    assert node["widgets_values"] == [832, 480, 81, 1]
