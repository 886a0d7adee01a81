"""`comfyctl serve` without a ComfyUI checkout: the pinned ComfyUI and packs, fetched by the
image build's own mechanism (comfyctl.sources) into the data folder, with a venv made by the
image's install steps (comfyctl.runtime_install) from docker/image-lock.txt.

Everything lands in DATA/comfyui/: ComfyUI/ (the sources), venv/ (its interpreter) and
installed.json, which records what they were made from. A later start with the same pins
reuses them; a changed pin (custom_nodes/lock.yaml, the image lock or the torch stack)
rebuilds them. The record is written last, so an interrupted or failed attempt is redone
at the next start.
Its settings (SOURCES_DIR, GIT_MIRROR, TORCH_INDEX_URL, COMFY_BASE_PYTHON) are declared in
comfy_stack.variables; pip reads PIP_INDEX_URL itself.

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
from pathlib import Path

from comfy_stack.files import SHARED, write_atomic
from comfyctl import runtime_install, sources
from comfyctl.config import BootstrapSettings, ServeSettings
from comfyctl.errors import ConfigError

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "custom_nodes" / "lock.yaml"
CONSTRAINTS = REPO / "custom_nodes" / "constraints.txt"
IMAGE_LOCK = REPO / "docker" / "image-lock.txt"
PATCHES = REPO / "docker" / "patches"  # applied to the packs, as in the image
DOCKERFILE = REPO / "docker" / "Dockerfile"
# The image lock is resolved for Python 3.12 (some pinned wheels exist for it only).
PYTHON_VERSION = "3.12"


def variant() -> str:
    smi = shutil.which("nvidia-smi")
    return "cuda" if smi and subprocess.run([smi, "-L"], capture_output=True).returncode == 0 else "cpu"


def base_python(configured: Path | None) -> str:
    exe = str(configured) if configured else shutil.which(f"python{PYTHON_VERSION}")
    if not exe:
        raise ConfigError(
            f"no python{PYTHON_VERSION} on PATH to make ComfyUI's venv with: install Python "
            f"{PYTHON_VERSION}, set COMFY_BASE_PYTHON to one, or point COMFYUI_DIR at a checkout"
        )
    out = subprocess.run(
        [exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True
    )
    if out.returncode != 0:
        raise ConfigError(
            f"{exe} does not run ({out.stderr.strip()[-300:]}): set COMFY_BASE_PYTHON to a Python "
            f"{PYTHON_VERSION}"
        )
    if out.stdout.strip() != PYTHON_VERSION:
        raise ConfigError(
            f"{exe} is Python {out.stdout.strip() or '?'}; docker/image-lock.txt is for "
            f"Python {PYTHON_VERSION} (set COMFY_BASE_PYTHON)"
        )
    return exe


def wanted(kind: str, index: str | None) -> dict[str, str]:
    """What a copy must have been made from to be reused."""
    digest = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in (LOCK, IMAGE_LOCK, CONSTRAINTS)}
    digest |= {
        f"patch {p.relative_to(PATCHES)}": hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(PATCHES.glob("*/*.patch"))
    }
    return digest | {
        "torch": json.dumps(runtime_install.torch_versions(DOCKERFILE.read_text())),
        "variant": kind,
        "torch_index": index or runtime_install.TORCH_INDEX[kind],
    }


def ensure(s: ServeSettings) -> None:
    """ComfyUI and its interpreter (s.comfyui_dir, s.comfyui_python), made or reused."""
    settings: BootstrapSettings = s.bootstrap  # type: ignore[assignment]
    comfy, python = s.comfyui_dir, s.comfyui_python
    root = comfy.parent
    kind = variant()
    want = wanted(kind, settings.torch_index_url or None)
    record = root / "installed.json"
    if record.is_file() and comfy.is_dir() and python.exists() and json.loads(record.read_text()) == want:
        log.info("using ComfyUI and its venv in %s (made from the current pins)", root)
        return
    exe = base_python(settings.base_python)
    record.unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    log.info(
        "fetching the pinned ComfyUI and packs into %s and installing its venv (%s torch); "
        "this downloads several GB once",
        root,
        kind,
    )
    work = Path(tempfile.mkdtemp(prefix=".new-", dir=root))
    try:
        sources.fetch(LOCK, work, settings.sources_dir, settings.git_mirror or None)
        sources.apply_patches(PATCHES, work / "ComfyUI")  # as the image build does
        shutil.rmtree(comfy, ignore_errors=True)
        os.replace(work / "ComfyUI", comfy)
        # in place: a venv's scripts name its own path
        shutil.rmtree(root / "venv", ignore_errors=True)
        subprocess.run([exe, "-m", "venv", str(root / "venv")], check=True)
        constraints = root / "constraints.txt"
        shutil.copyfile(CONSTRAINTS, constraints)  # freeze_torch appends the torch pins to it
        runtime_install.install_torch(
            python,
            kind,
            runtime_install.torch_versions(DOCKERFILE.read_text()),
            settings.torch_index_url or None,
            IMAGE_LOCK,
        )
        runtime_install.install_requirements(python, comfy, LOCK, IMAGE_LOCK, constraints)
    except (sources.SourceError, subprocess.CalledProcessError) as exc:
        raise ConfigError(f"could not make ComfyUI's environment in {root}: {exc}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_atomic(record, json.dumps(want, indent=1), mode=SHARED)
    log.info("ComfyUI and its venv are ready in %s", root)
