"""How the image lets ComfyUI-Manager install a node's packages although the image's venv is
read-only: a venv with system site packages keeps Python's user site, ComfyUI's process
gets PYTHONUSERBASE on the data volume and PIP_USER, every other process keeps
PYTHONNOUSERSITE, and PIP_CONSTRAINT holds for every pip run. Exercised with a real venv
and a real pip install of a small wheel, in the environments comfyctl gives each process."""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from comfyctl import config, supervisor

pytestmark = pytest.mark.timeout(300)


def wheel(folder: Path, name: str = "stackprobe_pkg", version: str = "1.0") -> Path:
    path = folder / f"{name}-{version}-py3-none-any.whl"
    files = {
        f"{name}/__init__.py": b"WHERE = __file__\n",
        f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{name}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = (
        "".join(
            f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}\n"
            for n, d in files.items()
        )
        + f"{name}-{version}.dist-info/RECORD,,\n"
    )
    with zipfile.ZipFile(path, "w") as z:
        for n, d in files.items():
            z.writestr(n, d)
        z.writestr(f"{name}-{version}.dist-info/RECORD", record)
    return path


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    root = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", str(root)], check=True, timeout=240
    )
    return root / "bin" / "python"


def test_manager_installs_land_on_the_data_volume_and_only_comfyui_sees_them(tmp_path, venv, checkout):
    data = tmp_path / "data"
    container = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    container |= {
        "PYTHONNOUSERSITE": "1",
        "PIP_CONSTRAINT": str(tmp_path / "constraints.txt"),
        "PIP_NO_INDEX": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    (tmp_path / "constraints.txt").write_text("# the image appends its torch stack here\n")
    s = config.load(
        argparse.Namespace(),
        {"COMFYUI_DIR": str(checkout), "COMFY_DATA_DIR": str(data), "COMFYUI_USER_PACKAGES": "python"},
    )
    assert s.user_packages == data / "python"
    comfyui = container | supervisor.comfyui_env(s)  # what supervisord gives ComfyUI

    # ComfyUI-Manager runs pip inside ComfyUI's process, so with ComfyUI's environment
    out = subprocess.run(
        [str(venv), "-m", "pip", "install", str(wheel(tmp_path))],
        env=comfyui,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    probe = [str(venv), "-c", "import stackprobe_pkg; print(stackprobe_pkg.WHERE)"]
    where = subprocess.run(probe, env=comfyui, capture_output=True, text=True, timeout=60)
    assert where.returncode == 0 and where.stdout.startswith(str(data / "python")), where.stderr
    # the proxy and the sync run with the container's environment: the package is invisible
    assert subprocess.run(probe, env=container, capture_output=True, timeout=60).returncode != 0


def test_pip_constraint_holds_for_installs_from_comfyui(tmp_path, venv, checkout):
    (tmp_path / "constraints.txt").write_text("stackprobe-pkg==0.9\n")  # as torch==<the image's> is
    s = config.load(
        argparse.Namespace(),
        {
            "COMFYUI_DIR": str(checkout),
            "COMFY_DATA_DIR": str(tmp_path / "data"),
            "COMFYUI_USER_PACKAGES": "python",
        },
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    env |= supervisor.comfyui_env(s) | {
        "PIP_CONSTRAINT": str(tmp_path / "constraints.txt"),
        "PIP_NO_INDEX": "1",
    }
    out = subprocess.run(
        [str(venv), "-m", "pip", "install", str(wheel(tmp_path))],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0 and not (tmp_path / "data" / "python").joinpath("lib").exists()


def test_pip_list_in_comfyuis_environment_sees_the_whole_environment(tmp_path, venv, checkout):
    """ComfyUI-Manager asks `pip list` what is installed: only installs are user installs."""
    s = config.load(
        argparse.Namespace(),
        {
            "COMFYUI_DIR": str(checkout),
            "COMFY_DATA_DIR": str(tmp_path / "data"),
            "COMFYUI_USER_PACKAGES": "python",
        },
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    env |= supervisor.comfyui_env(s) | {"PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    listed = subprocess.run(
        [str(venv), "-m", "pip", "list", "--format=freeze"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert any(line.startswith("pip==") for line in listed.stdout.splitlines()), listed.stdout
