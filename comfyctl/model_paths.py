"""extra_model_paths.yaml: ComfyUI's model folders mapped into the data volume.

ComfyUI reads this file (--extra-model-paths-config) as `section: {base_path, is_default,
<folder key>: <path below base_path>}`; see its utils/extra_config.py. Legacy names map to
the folders the sync writes (clip -> text_encoders, unet -> diffusion_models) so that a
file placed under either name is found.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from comfy_stack.files import SHARED, write_atomic
from model_sync.manifest import FOLDER_KEYS

ALIASES = {"clip": "text_encoders", "unet": "diffusion_models", "t2i_adapter": "controlnet"}


def folder_map() -> dict[str, str]:
    """folder key -> the list of subfolders (newline-separated, as ComfyUI accepts)."""
    out: dict[str, str] = {}
    for key in sorted(FOLDER_KEYS):
        dirs = [key]
        target = ALIASES.get(key)
        if target:
            dirs = [target, key]
        for alias, real in ALIASES.items():
            if real == key:
                dirs.append(alias)
        out[key] = "\n".join(dict.fromkeys(dirs))
    return out


def render(models_dir: Path, custom_nodes_dir: Path | None = None, extensions_dir: Path | None = None) -> str:
    section = {"base_path": str(models_dir), "is_default": True, **folder_map()}
    if custom_nodes_dir is not None:
        # An absolute path ignores base_path; is_default puts it first in ComfyUI's list of
        # custom_nodes folders, which is where ComfyUI-Manager installs a node: on the data
        # volume, writable and kept across restarts, while the image's pinned packs stay
        # read-only in ComfyUI's own custom_nodes folder. ComfyUI inserts each is_default
        # entry first in turn, so the data volume's folder goes last to end up first, before
        # the gate's front-end extension (auth_proxy/extension.py).
        folders = [str(extensions_dir)] if extensions_dir is not None else []
        section["custom_nodes"] = "\n".join([*folders, str(custom_nodes_dir)])
    return "# Written by comfy-stack at every start; edits are overwritten.\n" + yaml.safe_dump(
        {"comfy_stack": section}, sort_keys=False
    )


def write(
    models_dir: Path, dest: Path, custom_nodes_dir: Path | None = None, extensions_dir: Path | None = None
) -> Path:
    for key in FOLDER_KEYS:
        if key not in ALIASES:
            (models_dir / key).mkdir(parents=True, exist_ok=True)
    return write_atomic(dest, render(models_dir, custom_nodes_dir, extensions_dir), mode=SHARED)
