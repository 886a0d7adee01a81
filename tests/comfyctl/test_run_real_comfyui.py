"""Opt-in tier: `comfyctl run` of the smoke workflow against a real ComfyUI, bare and
through the proxy with a token (COMFYUI_DIR, COMFYUI_PYTHON)."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfyctl import run as runmod
from tests.support.comfyctl import run_args as args

pytestmark = pytest.mark.comfyui


async def test_smoke_bare_and_through_the_proxy(comfy, tmp_path, proxy_for):
    bare = await runmod.run(args(tmp_path / "bare", comfy.url, param=["width=48"]))
    proxy = await proxy_for(comfy.url)
    proxied = await runmod.run(args(tmp_path / "proxied", proxy.origin, token=proxy.token))
    for result in (bare, proxied):
        (path,) = [Path(p) for p in result["outputs"]]
        assert path.read_bytes().startswith(b"\x89PNG") and path.parent.name == "smoke"


CUBE_OBJ = "".join(f"v {x} {y} {z}\n" for x in (0, 1) for y in (0, 1) for z in (0, 1)) + (
    "f 1 3 4 2\nf 5 6 8 7\nf 1 2 6 5\nf 3 7 8 4\nf 1 5 7 3\nf 2 4 8 6\n"
)


async def test_mesh_from_the_hunyuan3d_pack_is_downloaded(comfy, tmp_path):
    """The bundled Hunyuan3D workflow's tail on the real pack: its exporter writes a GLB
    and hands the path to Preview3D, which is all the history says about it; comfyctl
    must still download the file. Needs the pinned Hunyuan3D pack in COMFYUI_DIR."""
    import json
    import urllib.request

    with urllib.request.urlopen(comfy.url + "/object_info/Hy3D21ExportMesh", timeout=30) as r:
        if not json.load(r):
            pytest.skip("opt-in tier: the Hunyuan3D pack is not installed in COMFYUI_DIR")
    (comfy.data / "input" / "cube.obj").write_text(CUBE_OBJ)
    wf = {
        "params": {},
        "prompt": {
            "1": {"class_type": "Hy3D21LoadMesh", "inputs": {"glb_path": "cube.obj"}},
            "2": {
                "class_type": "Hy3D21ExportMesh",
                "inputs": {
                    "trimesh": ["1", 0],
                    "filename_prefix": "3D/cube",
                    "file_format": "glb",
                    "save_file": True,
                },
            },
            "3": {"class_type": "Preview3D", "inputs": {"model_file": ["2", 0]}},
        },
    }
    path = tmp_path / "mesh.json"
    path.write_text(json.dumps(wf))
    result = await runmod.run(args(tmp_path, comfy.url, workflow=path))
    (mesh,) = [Path(p) for p in result["outputs"]]
    assert mesh.relative_to(tmp_path / "out").parts[0] == "3D" and mesh.suffix == ".glb"
    assert mesh.read_bytes()[:4] == b"glTF"
    assert mesh.read_bytes() == (comfy.data / "output" / mesh.relative_to(tmp_path / "out")).read_bytes()


async def test_audio_input_through_the_proxy(comfy, tmp_path, proxy_for):
    """`--input audio=FILE` on the real server, behind the proxy: uploaded through
    /upload/image, renamed by the server because its input folder holds another
    speech.wav, wired into LoadAudio, and SaveAudio's FLAC downloaded."""
    from tests.support import REPO
    from tests.support.fake_comfyui import tiny_wav

    (comfy.data / "input" / "speech.wav").write_bytes(tiny_wav(0.25))
    speech = tmp_path / "speech.wav"
    speech.write_bytes(tiny_wav(0.5))
    proxy = await proxy_for(comfy.url)
    result = await runmod.run(
        args(
            tmp_path,
            proxy.origin,
            token=proxy.token,
            workflow=REPO / "tests/data/audio_roundtrip.json",
            input=[f"audio={speech}"],
        )
    )
    (out,) = [Path(p) for p in result["outputs"]]
    assert out.suffix == ".flac" and out.read_bytes().startswith(b"fLaC")
    assert (comfy.data / "input" / "speech (1).wav").read_bytes() == speech.read_bytes()


def _frames(n: int = 2) -> dict:
    return {
        "class_type": "EmptyImage",
        "inputs": {"width": 16, "height": 16, "batch_size": n, "color": 3368601},
    }


# Each kind of output a core node produces, as the real nodes take their inputs: (graph, the
# node whose output it is, how its file begins). SaveGLB needs a mesh that only a model
# makes (VAEDecodeHunyuan3D), so meshes are Preview3D's here.
REAL_KINDS = {
    "image": (
        {
            "1": _frames(1),
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "kinds/i"}},
        },
        "2",
        lambda b: b.startswith(b"\x89PNG"),
    ),
    "animated-webp": (
        {
            "1": _frames(),
            "2": {
                "class_type": "SaveAnimatedWEBP",
                "inputs": {
                    "images": ["1", 0],
                    "filename_prefix": "kinds/webp",
                    "fps": 6.0,
                    "lossless": True,
                    "quality": 80,
                    "method": "default",
                },
            },
        },
        "2",
        lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP",
    ),
    "animated-png": (
        {
            "1": _frames(),
            "2": {
                "class_type": "SaveAnimatedPNG",
                "inputs": {
                    "images": ["1", 0],
                    "filename_prefix": "kinds/apng",
                    "fps": 6.0,
                    "compress_level": 4,
                },
            },
        },
        "2",
        lambda b: b.startswith(b"\x89PNG"),
    ),
    "video": (
        {
            "1": _frames(4),
            "2": {"class_type": "CreateVideo", "inputs": {"images": ["1", 0], "fps": 8.0}},
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
        lambda b: b[4:8] == b"ftyp",
    ),
    "audio": (
        {
            "1": {"class_type": "LoadAudio", "inputs": {"audio": "kinds.wav"}},
            "2": {"class_type": "SaveAudio", "inputs": {"audio": ["1", 0], "filename_prefix": "audio/kinds"}},
        },
        "2",
        lambda b: b.startswith(b"fLaC"),
    ),
    "mesh-preview3d": (
        {"1": {"class_type": "Preview3D", "inputs": {"model_file": "3D/kinds_cube.glb"}}},
        "1",
        lambda b: b.startswith(b"glTF"),
    ),
    "text": (
        {
            "1": {"class_type": "PrimitiveString", "inputs": {"value": "a paper boat"}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
        },
        "2",
        lambda b: b == b"a paper boat",
    ),
}


@pytest.mark.parametrize("kind", REAL_KINDS, ids=list(REAL_KINDS))
async def test_each_kind_from_core_nodes_in_both_modes(comfy, tmp_path, proxy_for, kind):
    """The shapes the stand-in reproduces, from the real nodes: comfyctl run downloads the
    output, and the v2 job (its worker reads the history with the same parser) delivers it."""
    import json

    from comfy_jobs.settings import JobSettings
    from tests.support.fake_comfyui import TINY_GLB, tiny_wav

    graph, node, looks_right = REAL_KINDS[kind]
    (comfy.data / "input" / "kinds.wav").write_bytes(tiny_wav(0.25))
    (comfy.data / "output" / "3D").mkdir(exist_ok=True)
    (comfy.data / "output" / "3D" / "kinds_cube.glb").write_bytes(TINY_GLB)
    path = tmp_path / "wf.json"
    path.write_text(json.dumps({"prompt": graph, "params": {}}))

    native = await runmod.run(args(tmp_path / "native", comfy.url, workflow=path))
    (got,) = [Path(p) for p in native["outputs"]]
    assert looks_right(got.read_bytes()), got
    rel = got.relative_to(tmp_path / "native" / "out")
    if kind != "text":
        assert got.read_bytes() == (comfy.data / "output" / rel).read_bytes()

    proxy = await proxy_for(
        comfy.url, jobs=JobSettings(jobs_dir=tmp_path / "jobs", lease_s=5, worker_id="optin")
    )
    v2 = await runmod.run(
        args(tmp_path / "v2", proxy.origin, workflow=path, token=proxy.token, v2=True, timeout=120)
    )
    (delivered,) = [Path(p) for p in v2["outputs"]]
    assert delivered.parent == tmp_path / "v2" / "out" / node and looks_right(delivered.read_bytes())
