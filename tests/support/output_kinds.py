"""One small workflow per kind of output a bundled workflow produces, for the ComfyUI
stand-in: what the run saves, where, and how the file begins. `comfyctl run` (both modes)
and the v2 worker must deliver each."""

from __future__ import annotations

from dataclasses import dataclass

EMPTY = {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}


@dataclass(frozen=True)
class Kind:
    name: str
    graph: dict
    node: str  # the node whose output it is
    saved: str  # where ComfyUI saved it, relative to its output folder ("" for a text)
    starts: bytes  # what the delivered file begins with (a text: the whole text)

    @property
    def file_name(self) -> str:
        return self.saved.rpartition("/")[2] if self.saved else f"{self.node}_text_0.txt"


def saver(cls: str, prefix: str, **inputs) -> dict:
    return {
        "1": EMPTY,
        "2": {"class_type": cls, "inputs": {"images": ["1", 0], "filename_prefix": prefix, **inputs}},
    }


KINDS = [
    Kind("image", saver("SaveImage", "kinds/image"), "2", "kinds/image_00001_.png", b"\x89PNG"),
    Kind(
        "animated-webp",
        saver("SaveAnimatedWEBP", "kinds/anim", fps=6.0, lossless=False, quality=80, method="default"),
        "2",
        "kinds/anim_00001_.webp",
        b"RIFF",
    ),
    Kind(
        "animated-png",
        saver("SaveAnimatedPNG", "kinds/apng", fps=6.0),
        "2",
        "kinds/apng_00001_.png",
        b"\x89PNG",
    ),
    Kind(
        "video-core",
        {
            "1": EMPTY,
            "2": {"class_type": "CreateVideo", "inputs": {"images": ["1", 0], "fps": 16}},
            "3": {
                "class_type": "SaveVideo",
                "inputs": {
                    "video": ["2", 0],
                    "filename_prefix": "video/kinds",
                    "format": "auto",
                    "codec": "auto",
                },
            },
        },
        "3",
        "video/kinds_00001_.mp4",
        b"\x00\x00\x00\x10ftyp",
    ),
    Kind(
        "video-vhs",
        saver("VHS_VideoCombine", "kinds/vhs", frame_rate=8, format="video/h264-mp4", save_output=True),
        "2",
        "kinds/vhs_00001.mp4",
        b"\x00\x00\x00\x10ftyp",
    ),
    Kind(
        "audio",
        {
            "1": {"class_type": "LoadAudio", "inputs": {"audio": "speech.wav"}},
            "2": {"class_type": "SaveAudio", "inputs": {"audio": ["1", 0], "filename_prefix": "audio/kinds"}},
        },
        "2",
        "audio/kinds_00001_.flac",
        b"fLaC",
    ),
    Kind(
        "mesh-saveglb",
        {"1": {"class_type": "SaveGLB", "inputs": {"mesh": ["1", 0], "filename_prefix": "mesh/kinds"}}},
        "1",
        "mesh/kinds_00001_.glb",
        b"glTF",
    ),
    Kind(
        "mesh-preview3d",
        {
            "1": {
                "class_type": "Hy3D21ExportMesh",
                "inputs": {"filename_prefix": "3D/kinds", "file_format": "glb", "save_file": True},
            },
            "2": {"class_type": "Preview3D", "inputs": {"model_file": ["1", 0]}},
        },
        "2",
        "3D/kinds_00001_.glb",
        b"glTF",
    ),
    Kind(
        "text",
        {
            "1": {"class_type": "PrimitiveString", "inputs": {"value": "a paper boat"}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
        },
        "2",
        "",
        b"a paper boat",
    ),
]
CLASSES = {n["class_type"] for k in KINDS for n in k.graph.values()}
