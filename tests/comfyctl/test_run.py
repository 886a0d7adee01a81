"""`comfyctl run` over real sockets: against the ComfyUI stand-in bare, and through the
real proxy with a token."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from comfy_jobs.outputs import all_outputs
from comfyctl import run as runmod
from tests.support import REPO, fake_comfyui, python_env
from tests.support.comfyctl import run_args as args
from tests.support.comfyui import SMOKE_WORKFLOW as SMOKE


@pytest.fixture
async def upstream(tmp_path, aiohttp_server):
    return await aiohttp_server(fake_comfyui.create_app(tmp_path / "server" / "output"))


@pytest.fixture
async def proxied(upstream, proxy_for):
    proxy = await proxy_for(f"http://127.0.0.1:{upstream.port}")
    return proxy.origin, proxy.token


async def test_runs_through_the_proxy_and_downloads_outputs(tmp_path, proxied):
    base, token = proxied
    result = await runmod.run(
        args(tmp_path, base, token=token, param=["filename_prefix=clips/cat", "width=16"])
    )
    (path,) = [Path(p) for p in result["outputs"]]
    assert path.parent == tmp_path / "out" / "clips" and path.read_bytes().startswith(b"\x89PNG")
    served = tmp_path / "server" / "output" / "clips" / path.name
    assert served.read_bytes() == path.read_bytes()


async def test_bare_server_and_set(tmp_path, upstream):
    result = await runmod.run(
        args(tmp_path, f"http://127.0.0.1:{upstream.port}", set=["4.filename_prefix=x/y"])
    )
    assert Path(result["outputs"][0]).parent.name == "x"


async def test_without_credentials_the_proxy_refuses(tmp_path, proxied):
    base, _ = proxied
    with pytest.raises(runmod.Unreachable, match="credentials|refused"):
        await runmod.run(args(tmp_path, base))


@pytest.mark.parametrize(
    "kw,needle",
    [
        ({"set": ["9.width=3"]}, "node '9' is not in the workflow"),
        ({"set": ["1.nope=3"]}, "has no input 'nope'"),
        ({"set": ["2.image=3"]}, "is a link"),
        ({"param": ["sampler=euler"]}, "parameters are"),
        ({"param": ["width"]}, "expected NAME=VALUE"),
        ({"input": ["nothing=/x.png"]}, "neither NODE.INPUT nor a parameter"),
    ],
)
async def test_bad_targets_are_errors_not_skips(tmp_path, upstream, kw, needle):
    with pytest.raises(runmod.WorkflowError, match=needle):
        await runmod.run(args(tmp_path, f"http://127.0.0.1:{upstream.port}", **kw))
    assert upstream.app[fake_comfyui.STATE]["history"] == {}, "nothing was queued"


async def test_failing_node_reports_comfyui_error(tmp_path, upstream):
    wf = json.loads(SMOKE.read_text())
    wf["prompt"]["2"]["inputs"]["fail"] = True
    path = tmp_path / "fails.json"
    path.write_text(json.dumps(wf))
    with pytest.raises(
        runmod.NodeFailed, match="node 2 .ImageInvert. failed: RuntimeError: simulated failure"
    ):
        await runmod.run(args(tmp_path, f"http://127.0.0.1:{upstream.port}", workflow=path))


async def test_rejected_prompt_prints_node_errors(tmp_path, upstream):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"1": {"class_type": "NoSuchNode", "inputs": {}}}))
    with pytest.raises(runmod.Rejected, match="node 1 .NoSuchNode.: Cannot find class"):
        await runmod.run(args(tmp_path, f"http://127.0.0.1:{upstream.port}", workflow=path))


async def test_outputs_are_read_even_when_history_lags_execution_success(tmp_path, aiohttp_server):
    """ComfyUI's order: execution_success, then the history is written, then executing/null."""
    lagging = await aiohttp_server(fake_comfyui.create_app(tmp_path / "server" / "output", history_delay=0.5))
    result = await runmod.run(args(tmp_path, f"http://127.0.0.1:{lagging.port}"))
    (path,) = [Path(p) for p in result["outputs"]]
    assert path.read_bytes().startswith(b"\x89PNG")


async def test_timeout(tmp_path, aiohttp_server):
    slow = await aiohttp_server(fake_comfyui.create_app(tmp_path / "o", delay=5))
    with pytest.raises(runmod.TimedOut):
        await runmod.run(args(tmp_path, f"http://127.0.0.1:{slow.port}", timeout=0.5))


async def test_upload_uses_the_name_the_server_returns(tmp_path, upstream):
    wf = {
        "params": {"image": "1.image"},
        "prompt": {
            "1": {"class_type": "LoadImage", "inputs": {"image": "placeholder.png"}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "u"}},
        },
    }
    path = tmp_path / "load.json"
    path.write_text(json.dumps(wf))
    img = tmp_path / "photo.png"
    img.write_bytes(fake_comfyui.tiny_png())
    (tmp_path / "server" / "input").mkdir(parents=True)
    (tmp_path / "server" / "input" / "photo.png").write_bytes(b"already there")
    await runmod.run(
        args(tmp_path, f"http://127.0.0.1:{upstream.port}", workflow=path, input=[f"image={img}"])
    )
    (entry,) = upstream.app[fake_comfyui.STATE]["history"].values()
    assert entry["prompt"][2]["1"]["inputs"]["image"] == "photo (1).png"


async def test_downloads_meshes_from_saveglb_and_preview3d(tmp_path, upstream):
    """3D results arrive two ways: SaveGLB lists {"3d": [file entries]}, while the Hunyuan3D
    pack's exporter hands a bare output-relative path to Preview3D ({"result": [path, None]})."""
    wf = {
        "params": {},
        "prompt": {
            "1": {
                "class_type": "Hy3D21ExportMesh",
                "inputs": {"filename_prefix": "3D/Hy21", "file_format": "glb"},
            },
            "2": {"class_type": "Preview3D", "inputs": {"model_file": ["1", 0]}},
            "3": {"class_type": "SaveGLB", "inputs": {"filename_prefix": "mesh/core"}},
        },
    }
    path = tmp_path / "mesh.json"
    path.write_text(json.dumps(wf))
    result = await runmod.run(args(tmp_path, f"http://127.0.0.1:{upstream.port}", workflow=path))
    got = sorted(Path(p).relative_to(tmp_path / "out").as_posix() for p in result["outputs"])
    assert got == ["3D/Hy21_00001_.glb", "mesh/core_00001_.glb"]
    for rel in got:
        assert (tmp_path / "out" / rel).read_bytes() == (tmp_path / "server" / "output" / rel).read_bytes()
        assert (tmp_path / "out" / rel).read_bytes().startswith(b"glTF")


def test_output_files_ignores_what_is_not_a_file():
    """A text naming a mesh is a text, not a file to fetch (comfy_jobs.outputs reads both)."""
    outputs = {
        "9": {"result": ["", None], "text": ["notes.glb"]},
        "10": {"result": ["sub\\dir\\m.OBJ", None]},
    }
    files = [o.view_params() for o in all_outputs(outputs) if o.text is None]
    assert files == [{"filename": "m.OBJ", "subfolder": "sub/dir", "type": "output"}]


def test_cli_exit_codes(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "comfyctl",
            "run",
            str(SMOKE),
            "--server",
            "http://127.0.0.1:9",
            "--timeout",
            "5",
        ],
        cwd=REPO,
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 6 and "cannot reach" in out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "comfyctl", "run", str(SMOKE), "--set", "7.x=1"],
        cwd=REPO,
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "node '7'" in out.stderr


async def test_progress_is_a_bar_per_node_on_stderr(tmp_path, upstream, capsys):
    result = await runmod.run(args(tmp_path, f"http://127.0.0.1:{upstream.port}", json=False))
    err = capsys.readouterr().err
    for node, cls in (("1", "EmptyImage"), ("2", "ImageInvert"), ("3", "ImageScale"), ("4", "SaveImage")):
        line = next((ln for ln in err.splitlines() if f"node {node} {cls}" in ln), None)
        assert line is not None, err
        assert "2/2" in line, line  # the stand-in reports two steps per node, as a sampler would
    assert result["outputs"]
