"""Check API workflows against node schemas captured from ComfyUI's /object_info and
against the model manifest: ComfyUI itself only finds these mistakes when a prompt is
queued on a server that has every pack and model, so they are caught here instead.

    python -m workflows.validate            # every workflows/api/*.json; exit 1 on a problem
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
# Inputs whose COMBO options are the files on the server at capture time; they are
# checked against models.yaml instead (input name -> the manifest folders it may name).
MODEL_INPUTS = {
    "unet_name": {"diffusion_models", "unet"},
    "ckpt_name": {"checkpoints"},
    "vae_name": {"vae", "vae_approx"},
    "clip_name": {"text_encoders", "clip", "clip_vision"},
    "clip_name1": {"text_encoders", "clip"},
    "clip_name2": {"text_encoders", "clip"},
    "lora_name": {"loras"},
    "model_name": {"upscale_models"},
    "audio_encoder_name": {"audio_encoders"},
}
# Pack loaders whose input names say nothing of the folder they list (class, input).
PACK_MODEL_INPUTS = {
    ("Hy3DMeshGenerator", "model"): {"diffusion_models"},
    ("Hy3D21VAELoader", "model_name"): {"vae"},
}


def model_folders(cls: str, name: str) -> set[str] | None:
    return PACK_MODEL_INPUTS.get((cls, name)) or MODEL_INPUTS.get(name)


def spec_options(spec) -> dict:
    """An input spec's options dict (`["INT", {"min": 0}]` -> {"min": 0}), else {}."""
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def is_upload(spec) -> bool:
    """Inputs naming a file the user uploads (`comfyctl run --input NAME=FILE`): the schema
    flags them for the editor's upload button, and their COMBO options are whatever sat in
    the capturing server's input folder."""
    opts = spec_options(spec)
    return any(opts.get(k) for k in ("image_upload", "video_upload", "audio_upload"))


def load_schemas(directory: Path = HERE / "schemas") -> dict:
    schemas: dict = {}
    for f in sorted(directory.glob("*.json")):
        schemas.update(json.loads(f.read_text(encoding="utf-8")))
    return schemas


def manifest_files(path: Path = HERE / "models.yaml") -> dict[tuple[str, str], set[str]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {(f["folder"], f["path"]): set(f.get("profiles") or []) for f in data["files"]}


def _options(spec) -> list | None:
    kind = spec[0]
    if isinstance(kind, list):
        return kind
    if kind == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        return spec[1].get("options")
    return None


def _check_input(nid, cls, name, value, spec, prompt, schemas, models, profile, errors):
    kind = spec[0]
    opts = spec_options(spec)
    if isinstance(value, list):
        if len(value) != 2 or str(value[0]) not in prompt:
            errors.append(f"node {nid}.{name}: link {value!r} points at no node")
            return
        src = prompt[str(value[0])]["class_type"]
        outs = schemas.get(src, {}).get("output", [])
        if not isinstance(value[1], int) or value[1] >= len(outs):
            errors.append(f"node {nid}.{name}: {src} has no output {value[1]!r}")
            return
        out_type = outs[value[1]]
        if isinstance(kind, str) and "*" not in (kind, out_type) and out_type not in kind.split(","):
            errors.append(f"node {nid}.{name}: wants {kind}, gets {out_type} from {src}")
        return
    folders = model_folders(cls, name)
    if folders and _options(spec) is not None:
        hits = [p for (folder, path), p in models.items() if path == value and folder in folders]
        if not hits:
            errors.append(f"node {nid}.{name}: model {value!r} is not in models.yaml")
        elif profile is not None and not any(profile in p for p in hits):
            errors.append(f"node {nid}.{name}: model {value!r} is not in profile {profile!r}")
        return
    choices = _options(spec)
    if choices is not None:
        if value not in choices:
            errors.append(f"node {nid}.{name}: {value!r} is not one of {choices[:8]}")
    elif kind == "INT" and not (isinstance(value, int) and not isinstance(value, bool)):
        errors.append(f"node {nid}.{name}: wants INT, got {value!r}")
    elif kind == "FLOAT" and not isinstance(value, (int, float)):
        errors.append(f"node {nid}.{name}: wants FLOAT, got {value!r}")
    elif kind == "STRING" and not isinstance(value, str):
        errors.append(f"node {nid}.{name}: wants STRING, got {value!r}")
    elif kind == "BOOLEAN" and not isinstance(value, bool):
        errors.append(f"node {nid}.{name}: wants BOOLEAN, got {value!r}")
    if kind in ("INT", "FLOAT") and isinstance(value, (int, float)):
        if "min" in opts and value < opts["min"] or "max" in opts and value > opts["max"]:
            errors.append(f"node {nid}.{name}: {value} outside [{opts.get('min')}, {opts.get('max')}]")


def validate(doc: dict, schemas: dict, models: dict, profile: str | None = None) -> list[str]:
    """Return the problems of one bundled API workflow ({"prompt": ..., "params": ...})."""
    errors: list[str] = []
    prompt = doc.get("prompt", {})
    for nid, node in prompt.items():
        cls = node.get("class_type")
        schema = schemas.get(cls)
        if schema is None:
            errors.append(f"node {nid}: class {cls!r} is in no captured schema")
            continue
        spec_in = schema.get("input", {})
        required, optional = spec_in.get("required", {}), spec_in.get("optional", {})
        inputs = node.get("inputs", {})
        for name in required:
            if name not in inputs:
                errors.append(f"node {nid} ({cls}): required input {name!r} missing")
        for name, value in inputs.items():
            spec = required.get(name) or optional.get(name)
            if spec is None:
                errors.append(f"node {nid} ({cls}): no input named {name!r}")
                continue
            if is_upload(spec) and isinstance(value, str):
                if f"{nid}.{name}" not in doc.get("params", {}).values():
                    errors.append(f"node {nid}.{name}: an upload input needs a parameter name")
                continue
            _check_input(nid, cls, name, value, spec, prompt, schemas, models, profile, errors)
    for pname, target in doc.get("params", {}).items():
        node_id, _, input_name = str(target).partition(".")
        if node_id not in prompt or input_name not in prompt[node_id].get("inputs", {}):
            errors.append(f"param {pname!r}: {target!r} names no input of the workflow")
    return errors


def main() -> int:
    schemas, models = load_schemas(), manifest_files()
    bad = 0
    for f in sorted((HERE / "api").glob("*.json")):
        for e in validate(json.loads(f.read_text(encoding="utf-8")), schemas, models, f.stem):
            print(f"{f.name}: {e}")
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
