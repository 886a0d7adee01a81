"""What a run left behind, and moving files between the ledger's assets and ComfyUI.

`outputs_of` is the one reader of a run's outputs (a `/history` entry's or an `executed`
message's): the v2 worker and `comfyctl run`, in both its modes, see the same `Output`s.
`Files` moves input assets into ComfyUI's input folder (through its upload route, so a
ComfyUI on another host works too), and every output of a run (through /view) into
assets, committed one by one as they appear, so a job's results outlive ComfyUI's history
and temp folder."""

from __future__ import annotations

import copy
import logging
import posixpath
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from comfy_jobs import model
from comfy_jobs.comfy import ComfyUI, FileGone
from comfy_jobs.model import Asset, Job
from comfy_jobs.workflow import asset_refs, content_type_of, input_name, output_kind, ref_id

log = logging.getLogger(__name__)
CHUNK = 256 * 1024


class MissingInput(Exception):
    pass


def new_asset_id() -> str:
    return "asset_" + uuid.uuid4().hex


async def _one(data: bytes):
    yield data


class Files:
    def __init__(self, ledger, blobs, hub, mirror=None):
        self.ledger, self.blobs, self.hub, self.mirror = ledger, blobs, hub, mirror

    async def resolve_inputs(self, comfy: ComfyUI, workflow: dict) -> dict:
        """A copy of the workflow with each core/ASSET reference replaced by the name of
        the uploaded file ComfyUI's loaders expect."""
        graph = copy.deepcopy(workflow)
        for node_id, name, ref in asset_refs(graph):
            asset = await self.ledger.get_asset(ref_id(ref) or "")
            path = asset and await self.blobs.ensure_local(asset.hash, asset.remote_uri)
            if not path:
                raise MissingInput(f"node {node_id} input {name!r}: asset {ref_id(ref)} is gone")
            graph[node_id]["inputs"][name] = await comfy.upload_input(
                input_name(asset.id, asset.hash, asset.file_path), path
            )
        return graph

    async def commit(
        self,
        comfy: ComfyUI,
        job: Job,
        node_id: str,
        node_out: dict,
        seen: set,
        later: Callable[[], list[model.Output] | None] = lambda: None,
    ) -> None:
        """Commit the files one node reported (its `executed` message or history entry) that
        are not in `seen` (the (node, name) pairs committed already), adding them there.

        `later()`, asked once each file is stored, returns a list when the job's end is near
        (ComfyUI has recorded the run as done): the output goes there, to be written with the
        job's terminal state in one transaction, rather than in one of its own just before it."""
        for out in outputs_of(node_id, node_out):
            if (node_id, out.name) in seen:
                continue
            if out.text is None:
                try:
                    async with comfy.view(out.name, out.subfolder, out.folder_type) as r:
                        digest, size, _ = await self.blobs.ingest(r.content.iter_chunked(CHUNK))
                except FileGone as exc:
                    log.error(
                        "job %s: ComfyUI no longer has %s (node %s); it is not an output",
                        job.id,
                        exc,
                        node_id,
                    )
                    seen.add((node_id, out.name))
                    continue
                ctype = content_type_of(out.name)
            else:
                digest, size, _ = await self.blobs.ingest(_one(out.text.encode()))
                ctype = TEXT_TYPE
            asset = Asset(
                new_asset_id(),
                digest,
                size,
                ctype,
                out.name,
                time.time(),
                job.id,
                ["output"],
                owner=job.owner,
            )
            row = model.Output(node_id, out.name, output_kind(out.key, ctype), asset)
            box = later()
            if box is not None:
                await self.mirror_blob(digest)  # copied before the job says succeeded, as below
                box.append(row)
                log.info("job %s: output %s (%d bytes) from node %s", job.id, out.name, size, node_id)
            elif await self.ledger.add_output(job.id, node_id, out.name, row.type, asset):
                log.info("job %s: output %s (%d bytes) from node %s", job.id, out.name, size, node_id)
                await self.mirror_blob(digest)
            seen.add((node_id, out.name))
            self.hub.notify(job.id)

    async def mirror_blob(self, digest: str) -> None:
        if self.mirror is None:
            return
        try:
            uri = await self.mirror.put(self.blobs.path(digest), digest)
            await self.ledger.set_remote(digest, uri)
        except Exception as exc:  # noqa: BLE001 - the local copy stays; the job is not failed for it
            self.mirror.failures += 1
            log.error(
                "could not upload %s to %s: %s (the local copy is kept)", digest, self.mirror.prefix, exc
            )


# The suffixes of the meshes a Preview3D names bare (what trimesh and ComfyUI's 3D viewer
# read): its "result" holds other things too (an empty path, the camera).
MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".ply", ".stl", ".fbx", ".3mf", ".dae", ".usdz")
TEXT_TYPE = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Output:
    """One result of a run. A file ComfyUI saved (`text` is None) is fetched through /view
    with `view_params()`; a text a node returned carries itself and is stored as `name`.

    `name`, `subfolder` and `node_id` are the server's words, unchecked: whoever writes them
    to a disk must contain them (comfyctl.paths)."""

    node_id: str
    key: str  # the key it came under: images, gifs, audio, 3d, result, text, ...
    name: str  # the file name ComfyUI gave it; for a text, <node>_text_<i>.txt
    subfolder: str = ""
    folder_type: str = "output"  # ComfyUI's `type`: output, temp or input
    text: str | None = None

    def view_params(self) -> dict[str, str]:
        return {"filename": self.name, "subfolder": self.subfolder, "type": self.folder_type}


class MalformedOutputs(ValueError):
    """A run's outputs are not a map of node ids to what each node reported."""


def outputs_of(node_id: str, node_out) -> list[Output]:
    """Every output one node reported, in the shapes ComfyUI and the bundled packs write:

    - a file entry {"filename", "subfolder", "type"} under any key: SaveImage, PreviewImage
      and SaveAnimatedWEBP/PNG ("images"), core SaveVideo (also "images", beside
      "animated": [true]), VideoHelperSuite's VHS_VideoCombine ("gifs", with more fields),
      SaveAudio ("audio"), SaveGLB ("3d");
    - Preview3D's {"result": [model_file, camera_info]} (comfy_api's PreviewUI3D):
      model_file is a path relative to the output folder, which is how ComfyUI's front end
      loads it and how the Hunyuan3D pack's exporter hands its meshes on; only a path with a
      mesh suffix is a file (Windows separators allowed, as the pack joins with its OS's);
    - a text: PreviewAny's {"text": [value]} (comfy_api's PreviewText), as <node>_text_<i>.txt.

    Anything else a node puts there (the "animated" flags, a pack's own UI data) is not an
    output. A node that reported nothing (None) has none; any other `node_out` that is not a
    map is MalformedOutputs."""
    if node_out is None:
        return []
    if not isinstance(node_out, dict):
        raise MalformedOutputs(f"node {node_id}'s outputs are {type(node_out).__name__}, not an object")
    found: list[Output] = []
    for key, items in node_out.items():
        if not isinstance(items, list):
            continue
        for i, item in enumerate(items):
            if isinstance(item, dict) and isinstance(item.get("filename"), str):
                sub, kind = item.get("subfolder"), item.get("type")
                found.append(
                    Output(
                        node_id,
                        key,
                        item["filename"],
                        sub if isinstance(sub, str) else "",
                        kind if isinstance(kind, str) and kind else "output",
                    )
                )
            elif key == "result" and isinstance(item, str) and item.lower().endswith(MESH_SUFFIXES):
                sub, name = posixpath.split(item.replace("\\", "/"))
                found.append(Output(node_id, key, name, sub))
            elif key == "text" and isinstance(item, str):
                found.append(Output(node_id, key, f"{node_id}_text_{i}.txt", text=item))
    return found


def all_outputs(outputs) -> list[Output]:
    """Every output of a run, node by node, from its history entry's "outputs"."""
    if not isinstance(outputs, dict):
        raise MalformedOutputs(f"the run's outputs are {type(outputs).__name__}, not an object")
    return [out for node_id, node_out in outputs.items() for out in outputs_of(str(node_id), node_out)]


def pending(outputs: dict, seen: set) -> bool:
    """Whether a run's outputs (its history entry's) hold anything not committed yet."""
    return any((out.node_id, out.name) not in seen for out in all_outputs(outputs))
