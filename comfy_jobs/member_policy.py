"""What a member's workflow may not do: the checks the gate (native `/prompt`) and the job
service (v2) make before a member's graph reaches ComfyUI. Admins are not checked: they can
install packs, which is running code anyway.

Why this is needed: ComfyUI's file inputs are not confined to its folders. LoadImage and
the other loaders skip the check against their list of files (their VALIDATE_INPUTS takes the
input) and resolve `name [output]`, `name [temp]`, `../x` and `/abs/x` by a plain
os.path.join (folder_paths.annotated_filepath), so a graph sent to /prompt can read any other
person's outputs, and any file the server can open. Several nodes of the pinned packs take a
free path or folder to read or write, run ffmpeg or yt-dlp on a URL, or reach the shared
queue or GPU state. So for members:

- DENIED node classes are refused outright (each with the reason);
- the file-name inputs of the loaders (FILE_INPUTS) must name a file of theirs: no absolute
  path, no `..`, no backslash, no `[temp]`, `[output]` only under their own output folder,
  and plain names either at the top of the input folder (files the admin shares, and the
  job service's staged v2 inputs, whose names carry an unguessable asset id) or under their
  own input folder `<name>/`, never another person's folder;
- VHS_VideoCombine's format options that are pasted into ffmpeg's filter graph only take
  the values its formats list.

Graphs using classes not listed here are not checked: a pack an admin installs later should
be reviewed for such inputs and added (COMFY_MEMBER_DENIED_NODES adds classes without a
release).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

DENIED: dict[str, str] = {
    # read or list any path or folder, or fetch a URL (ffmpeg, yt-dlp)
    "VHS_LoadVideoPath": "reads any path or URL",
    "VHS_LoadVideoFFmpegPath": "reads any path or URL",
    "VHS_LoadImagePath": "reads any path or URL",
    "VHS_LoadImagesPath": "reads any folder",
    "VHS_LoadImages": "reads any folder",
    "VHS_LoadAudio": "reads any path or URL",
    "LoadImagesFromFolderKJ": "reads any folder",
    "LoadVideosFromFolder": "reads any folder",
    "CreateAudioMask": "reads any path",
    "CameraPoseVisualizer": "reads any path",
    "Hy3D21LoadMesh": "reads any path",
    "Hy3D21UseMultiViewsFromMetaData": "reads any path",
    "Hy3DHighPolyToLowPolyBakeMultiViewsWithMetaData": "reads and writes any path",
    "Hy3D21MeshGenerationBatch": "reads and writes any folder",
    "Hy3D21GenerateMultiViewsBatch": "reads and writes any folder",
    "GeminiInputFiles": "reads any file and sends it to a cloud API",
    "OpenAIInputFiles": "reads any file and sends it to a cloud API",
    # write anywhere (a .py in custom_nodes runs at the next start)
    "SaveImageKJ": "writes to any folder",
    "SaveStringKJ": "writes any text to any folder",
    "LossGraphNode": "writes to any path",
    "Hy3DInPaint": "writes to a path taken from its input",
    "Hy3D21MultiViewsGeneratorWithMetaData": "writes to a path taken from its input",
    "Hy3DBakeMultiViewsWithMetaData": "writes to a path taken from its input",
    # the shared server's state
    "VHS_BatchManager": "puts prompts at the front of the shared queue",
    "VRAM_Debug": "unloads every model on the shared GPU",
}

# class_type -> the inputs that name a file ComfyUI resolves with its annotated names
FILE_INPUTS: dict[str, tuple[str, ...]] = {
    "LoadImage": ("image",),
    "LoadImageMask": ("image",),
    "LoadImageOutput": ("image",),
    "LoadLatent": ("latent",),
    "LoadAudio": ("audio",),
    "RecordAudio": ("audio",),
    "LoadVideo": ("file",),
    "WebcamCapture": ("image",),
    "Load3D": ("image", "model_file"),
    "Load3DAnimation": ("image", "model_file"),
    "VHS_LoadVideo": ("video",),
    "VHS_LoadVideoFFmpeg": ("video",),
    "VHS_LoadAudioUpload": ("audio",),
    "LoadAndResizeImage": ("image",),
    "Hy3D21LoadImageWithTransparency": ("image",),
}
# VHS_VideoCombine pastes these into ffmpeg's arguments: only the values its formats offer
COMBINE_CHOICES: dict[str, frozenset[str]] = {
    "dither": frozenset(
        {
            "bayer",
            "heckbert",
            "floyd_steinberg",
            "sierra2",
            "sierra2_4a",
            "sierra3",
            "burkes",
            "atkinson",
            "none",
        }
    ),
}
# ComfyUI's own resolution (folder_paths.annotated_filepath): it tests the ending without the
# space and cuts one character more than the tag, so "a.pngX[output]" is output/a.png.
TAGS = (("[output]", "output", 9), ("[input]", "input", 8), ("[temp]", "temp", 7))


class Refused(ValueError):
    """The graph does something a member may not; the message says what and where."""


def annotated(value: str) -> tuple[str, str]:
    """The name and the folder ComfyUI reads `value` from, exactly as it resolves it."""
    for tag, kind, cut in TAGS:
        if value.endswith(tag):
            return value[:-cut], kind
    return value, "input"


def _file_problem(value: object, user: str) -> str | None:
    if isinstance(value, list):  # a link to another node's output
        return None
    if not isinstance(value, str):
        return None
    name, kind = annotated(value)
    if kind == "temp":
        return "names a preview in ComfyUI's temp folder"
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or "\\" in name:
        return "is an absolute path"
    parts = name.split("/")
    if ".." in parts or "." in parts or "" in parts[:-1]:
        return "leaves its folder"
    if kind == "output":
        return None if len(parts) > 1 and parts[0] == user else "names another person's output"
    if len(parts) > 1 and parts[0] != user:
        return "names a file in another person's input folder"
    return None


def check(prompt: dict, user: str, extra_denied: Iterable[str] = ()) -> None:
    """Raise Refused when `prompt` (ComfyUI's API format) does something a member may not."""
    denied = dict(DENIED)
    denied.update({name: "not allowed for members on this server" for name in extra_denied})
    for node_id, node in prompt.items():
        if not isinstance(node, dict):
            continue
        cls = str(node.get("class_type"))
        raw = node.get("inputs")
        inputs: dict = raw if isinstance(raw, dict) else {}
        if cls in denied:
            raise Refused(f"node {node_id} ({cls}) {denied[cls]}: only an admin may run it")
        for name in FILE_INPUTS.get(cls, ()):
            if name in inputs and (problem := _file_problem(inputs[name], user)):
                raise Refused(f"node {node_id} ({cls}) input {name!r} {problem}")
        if cls == "VHS_VideoCombine":
            for name, allowed in COMBINE_CHOICES.items():
                value = inputs.get(name)
                if value is not None and not isinstance(value, list) and value not in allowed:
                    raise Refused(
                        f"node {node_id} ({cls}) input {name!r}: one of {', '.join(sorted(allowed))}"
                    )
