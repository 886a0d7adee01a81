"""Checking a submitted v2 body and its workflow, and resolving `core/ASSET` references.

Checked at submit (the contract's synchronous validation): the body's shape, the graph's
structure (nodes, links to nodes that exist), node classes ComfyUI knows (when it can be
asked), and that every asset reference names an asset we hold. ComfyUI's own validation
(types, ranges, files) runs when the worker submits; what it rejects fails the job with
ComfyUI's node errors.
"""

from __future__ import annotations

import mimetypes
import posixpath
import re

from comfy_jobs.errors import Malformed, Unacceptable

ASSET_TYPE = "core/ASSET"
RESERVED = ("webhook_url", "inputs")  # the contract reserves these and rejects them today
ALLOWED = {"workflow", "extra_data", "metadata"}
META_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
# How deep a workflow's values may nest: a node's inputs are a level or two (a link, an
# asset reference); copying and sending a graph recurse once per level, and past a few
# hundred Python's stack runs out in the worker, where the job could never run.
MAX_DEPTH = 64
mimetypes.add_type("image/webp", ".webp")
mimetypes.add_type("model/gltf-binary", ".glb")
mimetypes.add_type("video/webm", ".webm")
mimetypes.add_type("audio/flac", ".flac")


def check_body(body) -> tuple[dict, dict | None, dict | None]:
    """(workflow, extra_data, metadata) of a POST /api/v2/jobs body, or raises Unacceptable."""
    if not isinstance(body, dict):
        raise Unacceptable("invalid_request", "the body must be a JSON object {\"workflow\": {...}}")
    for name in RESERVED:
        if name in body:
            raise Unacceptable(
                "invalid_request", f"{name!r} is reserved by the Comfy API v2 and not accepted yet"
            )
    unknown = sorted(set(body) - ALLOWED)
    if unknown:
        raise Unacceptable(
            "invalid_request",
            f"unknown field(s) {', '.join(unknown)}; expected workflow, extra_data, metadata",
        )
    workflow = body.get("workflow")
    if not isinstance(workflow, dict):
        raise Unacceptable("invalid_workflow", "'workflow' must be an API-format workflow object")
    extra = body.get("extra_data")
    if extra is not None:
        if (
            not isinstance(extra, dict)
            or set(extra) - {"api_key_comfy_org"}
            or not isinstance(extra.get("api_key_comfy_org", ""), str)
        ):
            raise Unacceptable("invalid_request", "extra_data takes only {\"api_key_comfy_org\": \"...\"}")
    meta = body.get("metadata")
    if meta is not None:
        if not isinstance(meta, dict) or len(meta) > 16:
            raise Unacceptable("metadata_invalid", "metadata must be a map of at most 16 string labels")
        for k, v in meta.items():
            if (
                not META_KEY.match(str(k))
                or not isinstance(v, str)
                or len(v.encode()) > 256
                or any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in v)
            ):
                raise Unacceptable(
                    "metadata_invalid",
                    f"metadata label {str(k)[:40]!r}: a key is 1-40 of "
                    "A-Z a-z 0-9 _ - . and a value a string of at most 256 bytes",
                )
    if (depth := nesting(workflow)) > MAX_DEPTH:
        raise Malformed(
            f"the workflow nests values {depth} levels deep; at most {MAX_DEPTH} can be run",
            {"depth": depth, "limit": MAX_DEPTH},
        )
    check_graph(workflow)
    return workflow, extra or None, meta or None


def nesting(value: object) -> int:
    """How many lists and objects deep `value` goes (without recursing: any depth is safe)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, depth = stack.pop()
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


def check_graph(graph: dict, known_classes: set[str] | None = None) -> None:
    if {"nodes", "links"} <= set(graph):
        raise Unacceptable(
            "workflow_format_ui",
            "this is a UI-format workflow (the editor's save file); "
            "export it with 'Export (API)' and send that",
        )
    if not graph:
        raise Unacceptable("invalid_workflow", "the workflow has no nodes")
    errors: dict[str, list[dict]] = {}
    for node_id, node in graph.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            errors[str(node_id)] = [{"field": "class_type", "reason": "missing_class_type"}]
            continue
        if known_classes is not None and node["class_type"] not in known_classes:
            errors[str(node_id)] = [
                {"field": "class_type", "reason": "unknown_class", "class_type": node["class_type"]}
            ]
        inputs = node.get("inputs", {})
        if not isinstance(inputs, dict):
            errors[str(node_id)] = [{"field": "inputs", "reason": "not_an_object"}]
            continue
        for name, value in inputs.items():
            if is_link(value) and str(value[0]) not in graph:
                errors.setdefault(str(node_id), []).append(
                    {"field": name, "reason": "link_to_missing_node", "node": str(value[0])}
                )
    if errors:
        first_id, first = next(iter(errors.items()))
        cls = graph.get(first_id, {}).get("class_type") if isinstance(graph.get(first_id), dict) else None
        raise Unacceptable(
            "invalid_workflow",
            f"Node {first_id} ({cls or '?'}): {first[0]['field']}: {first[0]['reason'].replace('_', ' ')}",
            {"node_errors": errors},
        )


def is_link(value) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], (str, int))
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def asset_refs(graph: dict) -> list[tuple[str, str, dict]]:
    """(node_id, input name, reference) for every core/ASSET reference in the graph."""
    refs = []
    for node_id, node in graph.items():
        for name, value in (node.get("inputs") or {}).items():
            if isinstance(value, dict) and value.get("__type") == ASSET_TYPE:
                refs.append((str(node_id), name, value))
    return refs


def ref_id(ref: dict) -> str | None:
    info = ref.get("info")
    return info.get("id") if isinstance(info, dict) and isinstance(info.get("id"), str) else None


def input_name(asset_id: str, digest: str, file_path: str | None) -> str:
    """The file name an input asset gets in ComfyUI's input folder: stable per content, so
    a resubmission overwrites it with the same bytes, and it keeps the extension loaders check."""
    base = posixpath.basename(file_path or "") or asset_id
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base)[-80:]
    return f"v2-{digest.removeprefix('blake3:')[:16]}-{base}"


def content_type_of(name: str, default: str = "application/octet-stream") -> str:
    return mimetypes.guess_type(name)[0] or default


def output_kind(key: str, content_type: str) -> str:
    if key == "latents" or content_type == "application/x-latent":
        return "latent"
    major = content_type.split("/", 1)[0]
    return major if major in ("image", "video", "audio", "text") else "file"
