"""The image's build-time node check (python -m docker.check_nodes), run as the build runs it,
against a directory whose main.py starts the ComfyUI stand-in and can print the log lines
a failing pack leaves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support import REPO, free_port, python_env

MAIN = """\
import sys
print({log!r}, flush=True)
sys.argv[1:] = [a for a in sys.argv[1:] if a not in ("--cpu", "--disable-auto-launch")]
from tests.support.fake_comfyui import main
main()
"""


def check(
    tmp_path: Path, nodes: list[str], captured: dict[str, list[str]], log: str = ""
) -> subprocess.CompletedProcess:
    comfy = tmp_path / "comfy"
    comfy.mkdir(exist_ok=True)
    (comfy / "main.py").write_text(MAIN.format(log=log))
    lock = tmp_path / "lock.yaml"
    lock.write_text(
        yaml.safe_dump(
            {
                "comfyui": {"repo": "r", "commit": "0" * 40},
                "packs": [{"name": "P", "repo": "r", "commit": "0" * 40, "nodes": nodes}],
            }
        )
    )
    schemas = tmp_path / "schemas"
    schemas.mkdir(exist_ok=True)
    for old in schemas.glob("*.json"):
        old.unlink()
    for name, classes in captured.items():
        (schemas / f"{name}.json").write_text(json.dumps({c: {} for c in classes}))
    env = python_env(CHECK_NODES_PORT=str(free_port()), PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "docker.check_nodes", str(lock), str(comfy), str(schemas)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def test_passes_when_every_locked_and_captured_class_registers(tmp_path):
    out = check(tmp_path, ["SaveImage"], {"core": ["EmptyImage", "ImageInvert"], "P": ["Preview3D"]})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "all 3 captured classes are present" in out.stdout


def test_fails_on_a_class_missing_from_the_lock_or_the_capture(tmp_path):
    out = check(tmp_path, ["NotThere"], {"core": ["EmptyImage"]})
    assert out.returncode == 1 and "P: node NotThere is not registered" in out.stdout
    # a pack that swallowed its own import error: no IMPORT FAILED line, nodes simply absent
    out = check(
        tmp_path, [], {"P": ["SaveGLB", "KJDroppedNode"]}, log="KJNodes: LTXV nodes could not be imported."
    )
    assert out.returncode == 1 and "P: node KJDroppedNode is not registered" in out.stdout
    assert "make schemas" in out.stdout


def test_fails_on_import_failed_in_the_log(tmp_path):
    out = check(tmp_path, [], {}, log="IMPORT FAILED: ComfyUI-Broken")
    assert out.returncode == 1 and "IMPORT FAILED: ComfyUI-Broken" in out.stdout
