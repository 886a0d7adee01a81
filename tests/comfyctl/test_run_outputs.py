"""Every kind of output a bundled workflow produces comes down with `comfyctl run`, read
by the one parser the v2 worker uses too (comfy_jobs.outputs), in the shapes ComfyUI's
and the packs' code write (reproduced by the stand-in)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfy_jobs.outputs import Output, all_outputs
from comfyctl import run as runmod
from tests.support import REPO, fake_comfyui
from tests.support.comfyctl import run_args as args
from tests.support.output_kinds import CLASSES, KINDS


@pytest.fixture
async def upstream(tmp_path, aiohttp_server):
    return await aiohttp_server(
        fake_comfyui.create_app(tmp_path / "server" / "output", known_classes=CLASSES)
    )


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
async def test_each_kind_is_downloaded(tmp_path, upstream, kind):
    path = tmp_path / "wf.json"
    path.write_text(json.dumps({"prompt": kind.graph, "params": {}}))
    result = await runmod.run(args(tmp_path, f"http://127.0.0.1:{upstream.port}", workflow=path))
    (got,) = [Path(p) for p in result["outputs"]]
    if kind.saved:
        assert got == tmp_path / "out" / kind.saved
        assert got.read_bytes() == (tmp_path / "server" / "output" / kind.saved).read_bytes()
        assert got.read_bytes().startswith(kind.starts)
    else:
        assert got == tmp_path / "out" / kind.file_name and got.read_bytes() == kind.starts


async def test_the_bundled_hunyuan3d_workflow_delivers_its_mesh(tmp_path, aiohttp_server):
    """The Hunyuan3D pack's exporter hands its path to Preview3D; that is all the history says."""
    wf = REPO / "workflows/api/hunyuan3d-2.1.json"
    classes = {n["class_type"] for n in json.loads(wf.read_text(encoding="utf-8"))["prompt"].values()}
    app = fake_comfyui.create_app(tmp_path / "server" / "output", known_classes=classes)
    server = await aiohttp_server(app)
    result = await runmod.run(args(tmp_path, f"http://127.0.0.1:{server.port}", workflow=wf))
    (mesh,) = [Path(p) for p in result["outputs"]]
    assert mesh.relative_to(tmp_path / "out").as_posix() == "3D/hunyuan3d_00001_.glb"
    assert mesh.read_bytes().startswith(b"glTF")


def test_the_parser_takes_files_meshes_and_texts_and_nothing_else():
    outputs = {
        "9": {"result": ["", None], "text": ["notes.glb"], "animated": [True]},
        "10": {"result": ["sub\\dir\\m.OBJ", {"position": [0, 0, 1]}]},
        "11": {
            "gifs": [{"filename": "v_00001.mp4", "subfolder": "", "type": "temp", "format": "video/h264-mp4"}]
        },
        "12": {"images": [{"filename": 7}, "x.png"], "text": "not a list"},
        "13": None,
    }
    assert all_outputs(outputs) == [
        Output("9", "text", "9_text_0.txt", text="notes.glb"),
        Output("10", "result", "m.OBJ", "sub/dir"),
        Output("11", "gifs", "v_00001.mp4", "", "temp"),
    ]
