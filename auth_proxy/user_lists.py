"""The input-file lists a member sees: their own uploads and the shared files, nobody else's.

ComfyUI builds these lists from its input folder when /object_info is asked (LoadImage
and LoadImageMask: every file at the top of input/; LoadAudio: audio and video files;
LoadVideo and VideoHelperSuite's loaders: videos; Load3D: 3D models under input/3d/), and
marks each such input with how files are uploaded to it (`image_upload`, `video_upload`,
`audio_upload`, `file_upload`). For a member the gate keeps, of ComfyUI's list, the files at
the top of input/ (shared: what the admin put there), and adds the files in their own
folder (`alice/x.png`, the value a node takes for input/alice/x.png) that the same kind of
list would show. The shape of the answer is ComfyUI's: only the lists change. The admin's
answer is ComfyUI's own.

`/internal/files/{type}` (the front end's list of the top of a folder, for
LoadImageOutput's refresh) gives a member the shared inputs and none of output/ or temp/,
whose top holds only the admin's files.
"""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path

UPLOAD_FLAGS = ("image_upload", "video_upload", "audio_upload", "file_upload")
MODELS_3D = {".gltf", ".glb", ".obj", ".fbx", ".stl"}  # comfy_extras/nodes_load_3d.py
MOST_FILES = 10_000  # of one member's folder, listed at most


def own_files(input_dir: Path | None, user: str) -> list[str]:
    """The files in the member's input folder, as node values (`alice/sub/x.png`)."""
    if input_dir is None:
        return []
    root = input_dir / user
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            found.append((Path(folder) / name).relative_to(input_dir).as_posix())
            if len(found) >= MOST_FILES:
                return found
    return found


def kind_of(spec: list) -> tuple[list | None, str | None]:
    """The option list of an input spec and its upload flag, in either of ComfyUI's shapes:
    `[[options...], {"image_upload": true}]` or `["COMBO", {"options": [...], ...}]`."""
    if not spec or not isinstance(spec, list):
        return None, None
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    flag = next((f for f in UPLOAD_FLAGS if opts.get(f)), None)
    if isinstance(spec[0], list):
        return spec[0], flag
    if spec[0] == "COMBO" and isinstance(opts.get("options"), list):
        return opts["options"], flag
    return None, None


def fits(flag: str, value: str) -> bool:
    """Whether the list an input of this kind shows would hold this file."""
    if flag == "image_upload":
        return True
    if flag == "file_upload":
        return value.split("/")[1:2] == ["3d"] and Path(value).suffix.lower() in MODELS_3D
    kind = (mimetypes.guess_type(value, strict=False)[0] or "").split("/")[0]
    return kind == "video" or (flag == "audio_upload" and kind == "audio")


def member_lists(info: dict, own: list[str]) -> dict:
    """ComfyUI's /object_info answer with each input-file list made the member's, in place."""
    for node in info.values():
        inputs = node.get("input") if isinstance(node, dict) else None
        for group in inputs.values() if isinstance(inputs, dict) else ():
            for spec in group.values() if isinstance(group, dict) else ():
                options, flag = kind_of(spec)
                if options is None or flag is None:
                    continue
                mine = [v for v in own if fits(flag, v)]
                shared = [v for v in options if isinstance(v, str) and "/" not in v]
                options[:] = sorted(shared + mine)
    return info


def member_top_files(kind: str, listed: list) -> list:
    """`/internal/files/{kind}` for a member: only the shared inputs."""
    return [name for name in listed if isinstance(name, str)] if kind == "input" else []
