"""Convert bundled API workflows to ComfyUI's UI (litegraph) format and back, using the
captured node schemas; the tests convert both ways to prove the two forms agree.

    python -m workflows.convert        # writes workflows/ui/<name>.json for every api/*.json

ComfyUI has no server-side converter (the frontend builds the API graph in the browser),
so this is hand-written against the schemas' input order: connection inputs become
slots, widget inputs become `widgets_values` in schema order, and the widgets the
frontend adds after an input get their entries too: "fixed" after a seed (an INT with
`control_after_generate`, or any INT named seed/noise_seed, as the frontend does for
nodes that predate the flag), "image" after an image or video input with an upload
button, and two nulls after an audio one (its player and button), as the official
templates carry them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from comfy_stack.files import SHARED, write_atomic
from workflows.validate import load_schemas

HERE = Path(__file__).resolve().parent
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def _is_widget(spec) -> bool:
    return isinstance(spec[0], list) or spec[0] in WIDGET_TYPES


def _opts(spec) -> dict:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def _extra_widgets(name: str, spec) -> list:
    opts = _opts(spec)
    if spec[0] == "INT" and opts.get("control_after_generate", name in ("seed", "noise_seed")):
        return ["fixed"]
    if opts.get("image_upload") or opts.get("video_upload"):
        return ["image"]  # the upload button's value (the editor's image upload widget)
    if opts.get("audio_upload"):
        return [None, None]  # the audio player and the upload button, serialised empty
    return []


def _inputs(schema: dict) -> list[tuple[str, list]]:
    spec = schema.get("input", {})
    order = schema.get("input_order") or {k: list(v) for k, v in spec.items()}
    out = []
    for group in ("required", "optional"):
        for name in order.get(group, []):
            out.append((name, spec[group][name]))
    return out


def api_to_ui(prompt: dict, schemas: dict) -> dict:
    nodes, links = [], []
    link_id = 0
    out_links: dict[tuple[str, int], list[int]] = {}
    pending = []
    for col, (nid, node) in enumerate(prompt.items()):
        schema = schemas[node["class_type"]]
        inputs: list[dict] = []
        widgets: list = []
        for name, spec in _inputs(schema):
            value = node["inputs"].get(name)
            if isinstance(value, list):
                link_id += 1
                src, slot = str(value[0]), value[1]
                out_links.setdefault((src, slot), []).append(link_id)
                kind = spec[0] if isinstance(spec[0], str) else "COMBO"
                pending.append([link_id, int(src), slot, int(nid), len(inputs), kind])
                entry = {"name": name, "type": kind, "link": link_id}
                if _is_widget(spec):
                    # A widget fed by a link stays a widget in the editor: its socket names
                    # the widget, and widgets_values still holds a value for it.
                    entry["widget"] = {"name": name}
                    widgets.append(_opts(spec).get("default"))
                    widgets.extend(_extra_widgets(name, spec))
                inputs.append(entry)
            elif _is_widget(spec) and name in node["inputs"]:
                widgets.append(value)
                widgets.extend(_extra_widgets(name, spec))
        nodes.append(
            {
                "id": int(nid),
                "type": node["class_type"],
                "pos": [60 + 340 * col, 120],
                "size": [300, 120],
                "flags": {},
                "order": col,
                "mode": 0,
                "inputs": inputs,
                "properties": {"Node name for S&R": node["class_type"]},
                "widgets_values": widgets,
            }
        )
    for n in nodes:
        schema = schemas[n["type"]]
        n["outputs"] = [
            {"name": name, "type": typ, "links": out_links.get((str(n["id"]), i), []), "slot_index": i}
            for i, (typ, name) in enumerate(zip(schema["output"], schema["output_name"], strict=True))
        ]
    links = pending
    return {
        "last_node_id": max(int(k) for k in prompt),
        "last_link_id": link_id,
        "nodes": nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {},
        "version": 0.4,
    }


def ui_to_api(ui: dict, schemas: dict) -> dict:
    by_link = {link[0]: link for link in ui["links"]}
    prompt = {}
    for n in sorted(ui["nodes"], key=lambda n: n["id"]):
        schema = schemas[n["type"]]
        linked = {i["name"]: by_link[i["link"]] for i in n.get("inputs", []) if i.get("link") is not None}
        values = list(n.get("widgets_values", []))
        inputs = {}
        for name, spec in _inputs(schema):
            if name in linked:
                inputs[name] = [str(linked[name][1]), linked[name][2]]
                if _is_widget(spec):
                    del values[: 1 + len(_extra_widgets(name, spec))]
            elif _is_widget(spec) and values:
                inputs[name] = values.pop(0)
                del values[: len(_extra_widgets(name, spec))]
        prompt[str(n["id"])] = {"class_type": n["type"], "inputs": inputs}
    return prompt


def main() -> int:
    schemas = load_schemas()
    (HERE / "ui").mkdir(exist_ok=True)
    for f in sorted((HERE / "api").glob("*.json")):
        doc = json.loads(f.read_text(encoding="utf-8"))
        write_atomic(
            HERE / "ui" / f.name, json.dumps(api_to_ui(doc["prompt"], schemas), indent=1) + "\n", mode=SHARED
        )
        print(f"ui/{f.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
