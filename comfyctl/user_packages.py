"""pip's settings for ComfyUI's process when nodes installed through ComfyUI-Manager keep
their packages on the data volume (COMFYUI_USER_PACKAGES): `pip install` is a user install
there, and every other pip command sees the whole environment.

PIP_USER=1 would do the first, but pip reads it for every command that has a --user flag:
`pip list` then shows only the user site, and ComfyUI-Manager, which asks `pip list` what is
installed, reports "PyTorch is not installed" and reinstalls ComfyUI's frontend at every
start. A config file section applies to its own command only, so `[install] user = true`
is exactly the install-only setting (https://pip.pypa.io/en/stable/topics/configuration/).
"""

from __future__ import annotations

from pathlib import Path

from comfy_stack.files import SHARED, write_atomic

TEXT = "[install]\nuser = true\n"
NAME = "pip-user-install.conf"


def pip_config(run_dir: Path) -> Path:
    """The config file for PIP_CONFIG_FILE, written if absent or changed."""
    path = run_dir / NAME
    if not path.is_file() or path.read_text() != TEXT:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(path, TEXT, mode=SHARED, fsync=False)
    return path
