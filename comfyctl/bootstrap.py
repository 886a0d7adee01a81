"""`comfyctl serve` without a ComfyUI checkout: the pinned ComfyUI and packs, fetched by the
image build's own mechanism (comfyctl.sources) into the data folder, with a venv made by the
image's install steps (comfyctl.runtime_install) from docker/image-lock.txt.

Everything lands in DATA/comfyui/: ComfyUI/ (the sources), venv/ (its interpreter) and
installed.json, which records what they were made from. A later start with the same pins
reuses them; a changed pin (custom_nodes/lock.yaml, the image lock or the torch stack)
rebuilds them. The record is written last, so an interrupted or failed attempt is redone
at the next start.
Settings, all optional:

    SOURCES_DIR      folder of <name>-<commit>.tar.gz sources (else from git)
    GIT_MIRROR       URL prefix standing for https://github.com/ (docs/build.md)
    TORCH_INDEX_URL  the PyTorch index (default: the CUDA 12.8 one with an NVIDIA GPU, else the CPU one)
    PIP_INDEX_URL    read by pip itself
    COMFY_BASE_PYTHON  the Python 3.12 to make the venv with (default: python3.12 on PATH)

The CUDA extensions of the Hunyuan3D pack are built in the image only: without them its
texturing nodes do not run, the rest of the pack does.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from comfyctl import runtime_install, sources
from comfyctl.errors import ConfigError
from model_sync.fsutil import write_atomic

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "custom_nodes" / "lock.yaml"
CONSTRAINTS = REPO / "custom_nodes" / "constraints.txt"
IMAGE_LOCK = REPO / "docker" / "image-lock.txt"
DOCKERFILE = REPO / "docker" / "Dockerfile"
# The image lock is resolved for Python 3.12 (some pinned wheels exist for it only).
PYTHON_VERSION = "3.12"


@dataclass(frozen=True)
class BootstrapSettings:
    sources_dir: Path | None
    git_mirror: str | None
    torch_index_url: str | None
    base_python: str | None

    @classmethod
    def from_env(cls, env: dict[str, str]) -> "BootstrapSettings":
        folder = env.get("SOURCES_DIR")
        return cls(sources_dir=Path(folder).expanduser().resolve() if folder else None,
                   git_mirror=env.get("GIT_MIRROR") or None, torch_index_url=env.get("TORCH_INDEX_URL") or None,
                   base_python=env.get("COMFY_BASE_PYTHON") or None)


def paths(data_dir: Path) -> tuple[Path, Path]:
    """Where a managed ComfyUI checkout and its interpreter live under the data folder."""
    root = data_dir / "comfyui"
    return root / "ComfyUI", root / "venv" / "bin" / "python"


def variant() -> str:
    smi = shutil.which("nvidia-smi")
    return "cuda" if smi and subprocess.run([smi, "-L"], capture_output=True).returncode == 0 else "cpu"


def base_python(configured: str | None) -> str:
    exe = configured or shutil.which(f"python{PYTHON_VERSION}")
    if not exe:
        raise ConfigError(f"no python{PYTHON_VERSION} on PATH to make ComfyUI's venv with: install Python "
                          f"{PYTHON_VERSION}, set COMFY_BASE_PYTHON to one, or point COMFYUI_DIR at a checkout")
    out = subprocess.run([exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                         capture_output=True, text=True)
    if out.stdout.strip() != PYTHON_VERSION:
        raise ConfigError(f"{exe} is Python {out.stdout.strip() or '?'}; docker/image-lock.txt is for "
                          f"Python {PYTHON_VERSION} (set COMFY_BASE_PYTHON)")
    return exe


def wanted(kind: str, index: str | None) -> dict[str, str]:
    """What a copy must have been made from to be reused."""
    digest = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in (LOCK, IMAGE_LOCK, CONSTRAINTS)}
    return digest | {"torch": json.dumps(runtime_install.torch_versions(DOCKERFILE.read_text())),
                     "variant": kind, "torch_index": index or runtime_install.TORCH_INDEX[kind]}


def ensure(data_dir: Path, settings: BootstrapSettings) -> tuple[Path, Path]:
    """ComfyUI and its interpreter under DATA/comfyui, made or reused; returns their paths."""
    root = data_dir / "comfyui"
    comfy, python = paths(data_dir)
    kind = variant()
    want = wanted(kind, settings.torch_index_url)
    record = root / "installed.json"
    if record.is_file() and comfy.is_dir() and python.exists() and json.loads(record.read_text()) == want:
        log.info("using ComfyUI and its venv in %s (made from the current pins)", root)
        return comfy, python
    exe = base_python(settings.base_python)
    record.unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    log.info("fetching the pinned ComfyUI and packs into %s and installing its venv (%s torch); "
             "this downloads several GB once", root, kind)
    work = Path(tempfile.mkdtemp(prefix=".new-", dir=root))
    try:
        sources.fetch(LOCK, work, settings.sources_dir, settings.git_mirror)
        shutil.rmtree(comfy, ignore_errors=True)
        os.replace(work / "ComfyUI", comfy)
        # in place: a venv's scripts name its own path
        shutil.rmtree(root / "venv", ignore_errors=True)
        subprocess.run([exe, "-m", "venv", str(root / "venv")], check=True)
        constraints = root / "constraints.txt"
        shutil.copyfile(CONSTRAINTS, constraints)  # freeze_torch appends the torch pins to it
        runtime_install.install_torch(python, kind, runtime_install.torch_versions(DOCKERFILE.read_text()),
                                      settings.torch_index_url, IMAGE_LOCK)
        runtime_install.install_requirements(python, comfy, LOCK, IMAGE_LOCK, constraints)
    except (sources.SourceError, subprocess.CalledProcessError) as exc:
        raise ConfigError(f"could not make ComfyUI's environment in {root}: {exc}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_atomic(record, json.dumps(want, indent=1).encode())
    log.info("ComfyUI and its venv are ready in %s", root)
    return comfy, python

