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
