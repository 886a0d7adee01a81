"""`comfyctl run --v2` through the proxy's Comfy API v2."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from comfyctl import run as runmod
from tests.comfy_jobs.conftest import SMOKE
from tests.support import REPO
from tests.support.fake_comfyui import tiny_png
from tests.support.output_kinds import CLASSES, KINDS


def v2_args(tmp_path: Path, stack, workflow: dict, *extra: str) -> argparse.Namespace:
    path = tmp_path / "wf.json"
    path.write_text(json.dumps({"prompt": workflow, "params": {"image": "10.image"}}))
    p = argparse.ArgumentParser()
    runmod.add_arguments(p)
    return p.parse_args(
        [
            str(path),
            "--server",
            stack.url(),
            "--token",
            stack.token,
            "--out",
            str(tmp_path / "out"),
            "--json",
            "--v2",
            "--timeout",
            "30",
            *extra,
        ]
    )


async def test_run_v2_uploads_the_input_and_downloads_outputs(v2, tmp_path):
    (tmp_path / "cat.png").write_bytes(tiny_png(3, 3, 9))
    graph = {
        "10": {"class_type": "LoadImage", "inputs": {"image": "x.png"}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": "v2/cat"}},
    }
    result = await runmod.run(v2_args(tmp_path, v2, graph, "--input", f"image={tmp_path / 'cat.png'}"))
    [path] = [Path(p) for p in result["outputs"]]
    assert result["job_id"].startswith("job_") and path.parent == tmp_path / "out" / "4"
    [served] = (v2.tmp / "comfy/output/v2").glob("cat_*.png")
    assert path.read_bytes() == served.read_bytes()
    assert list((v2.tmp / "comfy/input").glob("v2-*-cat.png"))


async def test_run_v2_reports_a_node_failure(v2, tmp_path):
    graph = {**SMOKE, "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0], "fail": True}}}
    with pytest.raises(runmod.NodeFailed, match="node_execution_error: simulated failure"):
        await runmod.run(v2_args(tmp_path, v2, graph))


async def test_run_v2_reports_an_invalid_workflow(v2, tmp_path):
    graph = {"1": {"class_type": "NoSuchNode", "inputs": {}}}
    with pytest.raises(runmod.Rejected, match="invalid_workflow"):
        await runmod.run(v2_args(tmp_path, v2, graph))


async def test_run_v2_without_token(v2, tmp_path):
    a = v2_args(tmp_path, v2, SMOKE)
    a.token = None
    with pytest.raises(runmod.Unreachable, match="unauthorized"):
        await runmod.run(a)


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
async def test_run_v2_delivers_each_kind(v2, tmp_path, kind):
    """Each kind of output becomes an asset of the job (the worker reads the run's outputs
    with the same parser as `comfyctl run`) and comes down into --out/NODE/NAME."""
    v2.up_state["known_classes"] |= CLASSES  # before the first job: the service asks once
    result = await runmod.run(v2_args(tmp_path, v2, kind.graph))
    [path] = [Path(p) for p in result["outputs"]]
    assert path == tmp_path / "out" / kind.node / kind.file_name
    if kind.saved:
        assert path.read_bytes() == (v2.tmp / "comfy/output" / kind.saved).read_bytes()
        assert path.read_bytes().startswith(kind.starts)
    else:
        assert path.read_bytes() == kind.starts


async def test_run_v2_of_the_bundled_hunyuan3d_workflow_delivers_its_mesh(v2, tmp_path):
    """The issue's case: the workflow ends in Preview3D, whose history names the mesh bare."""
    wf = json.loads((REPO / "workflows/api/hunyuan3d-2.1.json").read_text(encoding="utf-8"))
    v2.up_state["known_classes"] |= {n["class_type"] for n in wf["prompt"].values()}
    result = await runmod.run(v2_args(tmp_path, v2, wf["prompt"]))
    [mesh] = [Path(p) for p in result["outputs"]]
    assert mesh == tmp_path / "out" / "7" / "hunyuan3d_00001_.glb"
    assert mesh.read_bytes() == (v2.tmp / "comfy/output/3D/hunyuan3d_00001_.glb").read_bytes()
