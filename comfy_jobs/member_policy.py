"""What a member's workflow may not do, and where its outputs go: the checks the gate (native `/prompt`) and the job
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

A member's outputs go to their own folder: every `filename_prefix` is moved under `<name>/`
(`own_outputs`), by the gate for native prompts and by the job service for v2 jobs.

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


# --- where a member's outputs go: their own folder -------------------------------------------
PREFIX_INPUT = "filename_prefix"


class BadName(ValueError):
    """A name that could leave its folder, or that ComfyUI would read differently; the
    message says which (a 400)."""


def parts_of(value: str, what: str) -> list[str]:
    """The folder names of a relative path, as os.path.normpath leaves them; `..`, absolute
    paths, backslashes (a separator on Windows) and control characters are refused."""
    if any(ord(c) < 32 or c == "\x7f" for c in value) or "\\" in value:
        raise BadName(f"{what} holds a backslash or a control character")
    if value.startswith("/"):
        raise BadName(f"{what} must be a relative path, not {value!r}")
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BadName(f"{what} may not contain '..'")
    return parts


def user_prefix(value: str, user: str) -> str:
    """A member's `filename_prefix`, moved into their folder. ComfyUI takes its last part as
    the file name's start, so a prefix already in their folder must keep a part after it
    ("alice" alone would be a file named alice_00001_.png at the top of output/)."""
    parts = parts_of(value, PREFIX_INPUT)
    if not parts:
        raise BadName(f"{PREFIX_INPUT} is empty: give the saved files' name")
    return "/".join(parts if parts[:1] == [user] and len(parts) > 1 else [user, *parts])


def own_outputs(prompt: dict, user: str) -> None:
    """Rewrite, in place, every `filename_prefix` of a member's prompt (API format:
    {node_id: {"class_type", "inputs"}}) into their output folder: SaveImage, the animated
    and video savers, SaveAudio, SaveGLB, the model savers, VideoHelperSuite's VideoCombine
    and every pack node that names its files the same way (folder_paths.get_save_image_path).

    A prefix fed by another node (`[node_id, slot]`) is refused: its text is only known
    while the prompt runs, and it could name another person's folder or the top of output/.
    """
    for node_id, node in prompt.items():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if not isinstance(inputs, dict) or PREFIX_INPUT not in inputs:
            continue
        value = inputs[PREFIX_INPUT]
        if not isinstance(value, str):
            raise BadName(
                f"node {node_id}: {PREFIX_INPUT} must be text written in the node (a member's "
                "outputs go to their own folder, which a value from another node could leave)"
            )
        try:
            inputs[PREFIX_INPUT] = user_prefix(value, user)
        except BadName as exc:
            raise BadName(f"node {node_id}: {exc}") from None


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
