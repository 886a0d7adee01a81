"""Moving files between the ledger's assets and ComfyUI: input assets into ComfyUI's input
folder (through its upload route, so a ComfyUI on another host works too), and every file
a run saved out of ComfyUI (through /view) into assets, committed one by one as they
appear, so a job's results outlive ComfyUI's history and temp folder."""

from __future__ import annotations

import copy
import logging
import time
import uuid

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

    async def commit(self, comfy: ComfyUI, job: Job, node_id: str, node_out: dict, seen: set) -> None:
        """Commit the files one node reported (its `executed` message or history entry) that
        are not in `seen` (the (node, name) pairs committed already), adding them there."""
        for key, name, item in items_of(node_id, node_out):
            if (node_id, name) in seen:
                continue
            if isinstance(item, dict):
                try:
                    async with comfy.view(name, item.get("subfolder", ""), item.get("type", "output")) as r:
                        digest, size, _ = await self.blobs.ingest(r.content.iter_chunked(CHUNK))
                except FileGone as exc:
                    log.error(
                        "job %s: ComfyUI no longer has %s (node %s); it is not an output",
                        job.id,
                        exc,
                        node_id,
                    )
                    seen.add((node_id, name))
                    continue
                ctype = content_type_of(name)
            else:
                digest, size, _ = await self.blobs.ingest(_one(item.encode()))
                ctype = "text/plain; charset=utf-8"
            asset = Asset(new_asset_id(), digest, size, ctype, name, time.time(), job.id, ["output"])
            if await self.ledger.add_output(job.id, node_id, name, output_kind(key, ctype), asset):
                log.info("job %s: output %s (%d bytes) from node %s", job.id, name, size, node_id)
                await self.mirror_blob(digest)
            seen.add((node_id, name))
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


def items_of(node_id: str, node_out: dict):
    """(key, output name, item) for each file a node reported (a dict with its filename) and
    each text it returned (a string, stored as <node>_text_<i>.txt)."""
    for key, items in (node_out or {}).items():
        if not isinstance(items, list):
            continue
        for i, item in enumerate(items):
            if isinstance(item, dict) and isinstance(item.get("filename"), str):
                yield key, item["filename"], item
            elif key == "text" and isinstance(item, str):
                yield key, f"{node_id}_text_{i}.txt", item


def pending(outputs: dict, seen: set) -> bool:
    """Whether a run's outputs (its history entry's) hold anything not committed yet."""
    return any(
        (str(node_id), name) not in seen
        for node_id, node_out in outputs.items()
        for _key, name, _item in items_of(str(node_id), node_out)
    )
