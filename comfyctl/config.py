"""Settings of `comfyctl serve` (and the image's entrypoint, which runs the same code).

Each setting is taken from its command-line flag, else its environment variable, else
its default; docs/runtime.md lists them all.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from comfy_stack import run_files
from comfy_stack import variables as v
from comfy_stack.env import Address, Env
from comfyctl.errors import ConfigError
from comfyctl.modes import COMFYUI_ATTENTION_FLAGS


@dataclass(frozen=True)
class BootstrapSettings:
    """What `serve` without a checkout makes ComfyUI from (comfyctl.bootstrap)."""

    sources_dir: Path | None  # source tarballs; None: git
    git_mirror: str  # URL prefix standing for https://github.com/; empty: none
    torch_index_url: str  # empty: the variant's PyTorch index
    base_python: Path | None  # the Python 3.12 for the venv; None: python3.12 on PATH


def managed_paths(data_dir: Path) -> tuple[Path, Path]:
    """Where `serve` without a checkout keeps ComfyUI and its interpreter."""
    root = data_dir / "comfyui"
    return root / "ComfyUI", root / "venv" / "bin" / "python"


@dataclass(frozen=True)
class ServeSettings:
    comfyui_dir: Path
    comfyui_python: Path
    data_dir: Path
    listen: Address  # the proxy's public HOST:PORT
    comfyui_port: int  # ComfyUI's loopback port
    mode: str
    extra_args: tuple[str, ...]
    sync_mode: str
    profiles: tuple[str, ...]
    sync_from: str
    manifest: Path
    workflows_dir: Path
    # Where pip puts packages that nodes installed through ComfyUI-Manager need, when the
    # interpreter's own site-packages is read-only (the image): None installs into it.
    user_packages: Path | None = None
    state_dir: Path | None = None  # the proxy's; None: auth/ in the data directory
    manager_network_mode: str = v.MANAGER_NETWORK_MODE.default  # comfyctl.manager_config
    # No COMFYUI_DIR: comfyui_dir and comfyui_python are made under the data directory at
    # start, from what this says (comfyctl.bootstrap); None with a checkout.
    bootstrap: BootstrapSettings | None = None
    jobs_dir: Path | None = None  # the v2 job ledger's; None: jobs/ in the data directory
    hf_hub_offline: str = v.HF_HUB_OFFLINE.default  # ComfyUI's process only
    cuda_version: str = ""  # the CUDA image's runtime, for the driver check
    numba_cache: Path | None = None  # the image's prebuilt numba cache (comfyctl.numba_cache)
    sync_interval: int = v.MODEL_SYNC_INTERVAL.default  # seconds between syncs while serving; 0: none
    attention: str = v.COMFYUI_ATTENTION.default  # comfyctl.modes.ATTENTION_FLAGS

    @property
    def run_dir(self) -> Path:
        return run_files.run_dir(self.data_dir)

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def proxy_port(self) -> int:
        return self.listen.port

    @property
    def proxy_state_dir(self) -> Path:
        return self.state_dir or self.data_dir / "auth"

    @property
    def proxy_jobs_dir(self) -> Path:
        return self.jobs_dir or self.data_dir / "jobs"


def load(args, environ: Mapping[str, str] | Env | None = None) -> ServeSettings:
    env = environ if isinstance(environ, Env) else Env(environ, error=ConfigError)
    comfy_dir = env.get(v.COMFYUI_DIR, getattr(args, "comfyui_dir", None))
    data_dir = env.get(v.COMFY_DATA_DIR, getattr(args, "data_dir", None)).resolve()
    bootstrap = None
    if comfy_dir is None:
        # no checkout: `serve` makes the image's ComfyUI in the data directory
        bootstrap = BootstrapSettings(
            sources_dir=env.get(v.SOURCES_DIR),
            git_mirror=env.get(v.GIT_MIRROR),
            torch_index_url=env.get(v.TORCH_INDEX_URL),
            base_python=env.get(v.COMFY_BASE_PYTHON),
        )
        comfy_dir, python = managed_paths(data_dir)
    else:
        python = env.get(v.COMFYUI_PYTHON, getattr(args, "comfyui_python", None)) or Path(sys.executable)
    user_packages = env.raw(v.COMFYUI_USER_PACKAGES)
    settings = ServeSettings(
        comfyui_dir=comfy_dir.resolve(),
        comfyui_python=python,
        data_dir=data_dir,
        listen=env.get(v.AUTH_PROXY_LISTEN, getattr(args, "listen", None)),
        comfyui_port=env.get(v.COMFYUI_PORT, getattr(args, "comfyui_port", None)),
        mode=env.get(v.COMFYUI_MODE, getattr(args, "mode", None)),
        attention=env.get(v.COMFYUI_ATTENTION, getattr(args, "attention", None)),
        extra_args=env.get(v.COMFYUI_EXTRA_ARGS, getattr(args, "extra_args", None)),
        sync_mode=env.get(v.MODEL_SYNC_MODE, getattr(args, "sync_mode", None)),
        sync_interval=env.get(v.MODEL_SYNC_INTERVAL, getattr(args, "sync_interval", None)),
        profiles=env.get(v.MODEL_PROFILES, getattr(args, "profile", None)),
        sync_from=env.get(v.MODEL_SYNC_FROM, getattr(args, "sync_from", None)),
        manifest=env.get(v.MODEL_MANIFEST, getattr(args, "manifest", None)),
        workflows_dir=env.get(v.COMFY_WORKFLOWS_DIR),
        # relative to the data directory; an absolute path stays as it is
        user_packages=(data_dir / user_packages).resolve() if user_packages else None,
        state_dir=env.get(v.AUTH_PROXY_STATE_DIR) if env.raw(v.AUTH_PROXY_STATE_DIR) else None,
        jobs_dir=env.get(v.COMFY_JOBS_DIR) if env.raw(v.COMFY_JOBS_DIR) else None,
        hf_hub_offline=env.get(v.HF_HUB_OFFLINE),
        cuda_version=env.get(v.CUDA_VERSION),
        numba_cache=env.get(v.COMFY_NUMBA_CACHE),
        manager_network_mode=env.get(v.MANAGER_NETWORK_MODE),
        bootstrap=bootstrap,
    )
    validate(settings)
    return settings


def validate(s: ServeSettings) -> None:
    """Fail fast, naming the setting and what to do."""
    if s.bootstrap is None and not (s.comfyui_dir / "main.py").is_file():
        raise ConfigError(f"COMFYUI_DIR={s.comfyui_dir} has no main.py: is it a ComfyUI checkout?")
    if s.bootstrap is None and not os.access(s.comfyui_python, os.X_OK):
        raise ConfigError(f"COMFYUI_PYTHON={s.comfyui_python} is not an executable interpreter")
    if s.listen.port == s.comfyui_port:
        raise ConfigError(
            f"AUTH_PROXY_LISTEN and COMFYUI_PORT both use port {s.comfyui_port}: "
            "ComfyUI must listen on a port of its own behind the proxy"
        )
    for flag in ("--listen", "--port"):
        if flag in s.extra_args:
            raise ConfigError(
                f"COMFYUI_EXTRA_ARGS contains {flag}: ComfyUI's address is set by "
                "COMFYUI_PORT and must stay on loopback behind the proxy"
            )
    given = [f for f in s.extra_args if f in COMFYUI_ATTENTION_FLAGS]
    if s.attention != "auto" and given:
        raise ConfigError(
            f"COMFYUI_ATTENTION={s.attention} and COMFYUI_EXTRA_ARGS's {' '.join(given)} both choose "
            "ComfyUI's attention (ComfyUI refuses two): keep one of them"
        )
    if s.sync_mode != "off" and s.profiles and not s.manifest.is_file():
        raise ConfigError(f"MODEL_MANIFEST={s.manifest} does not exist (needed for MODEL_PROFILES)")
    if s.sync_from and s.sync_from.split("://")[0] not in ("oss", "s3", "hf", "https"):
        raise ConfigError(
            f"MODEL_SYNC_FROM={s.sync_from!r}: expected oss://bucket/prefix or s3://bucket/prefix"
        )
