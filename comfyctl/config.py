"""Settings of `comfyctl serve` (and the image's entrypoint, which runs the same code).

Each setting is taken from its command-line flag, else its environment variable, else
its default; docs/runtime.md lists them all.
"""
from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from comfyctl.errors import ConfigError

MODES = ("auto", "gpu", "lowvram", "novram", "cpu")
SYNC_MODES = ("block", "background", "off")
MANAGER_NETWORK_MODES = ("auto", "public", "private", "offline")
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ServeSettings:
    comfyui_dir: Path
    comfyui_python: Path
    data_dir: Path
    listen: str                 # the proxy's public HOST:PORT
    comfyui_port: int           # ComfyUI's loopback port
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
    # ComfyUI-Manager's network mode (comfyctl.manager_config): auto|public|private|offline
    manager_network_mode: str = "auto"
    # no COMFYUI_DIR: comfyui_dir and comfyui_python are made under the data folder at start
    managed_comfyui: bool = False

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def proxy_port(self) -> int:
        return int(self.listen.rpartition(":")[2])


def _pick(flag, env: dict, name: str, default):
    if flag not in (None, ""):
        return flag
    value = env.get(name)
    return value if value not in (None, "") else default


def load(args, environ: dict | None = None) -> ServeSettings:
    env = dict(os.environ if environ is None else environ)
    data_dir = Path(_pick(getattr(args, "data_dir", None), env, "COMFY_DATA_DIR", "./data")).expanduser().resolve()
    comfy_dir = _pick(getattr(args, "comfyui_dir", None), env, "COMFYUI_DIR", None)
    # Without a checkout, `serve` makes one in the data folder (comfyctl.bootstrap).
    managed = comfy_dir is None
    if managed:
        from comfyctl.bootstrap import paths
        comfy_dir, python = paths(data_dir)
    else:
        comfy_dir = Path(comfy_dir).expanduser().resolve()
        python = Path(_pick(getattr(args, "comfyui_python", None), env, "COMFYUI_PYTHON", sys.executable)).expanduser()
    listen = str(_pick(getattr(args, "listen", None), env, "AUTH_PROXY_LISTEN", "0.0.0.0:8188"))
    port_raw = str(_pick(getattr(args, "comfyui_port", None), env, "COMFYUI_PORT", "8189"))
    mode = str(_pick(getattr(args, "mode", None), env, "COMFYUI_MODE", "auto")).lower()
    sync_mode = str(_pick(getattr(args, "sync_mode", None), env, "MODEL_SYNC_MODE", "block")).lower()
    profiles_raw = _pick(getattr(args, "profile", None), env, "MODEL_PROFILES", "")
    profiles = tuple(profiles_raw) if isinstance(profiles_raw, list) else tuple(
        p.strip() for p in str(profiles_raw).replace(" ", ",").split(",") if p.strip())
    try:
        extra = tuple(shlex.split(str(_pick(getattr(args, "extra_args", None), env, "COMFYUI_EXTRA_ARGS", ""))))
    except ValueError as exc:
        raise ConfigError(f"COMFYUI_EXTRA_ARGS cannot be split into arguments: {exc}") from None
    # relative to the data directory; an absolute path stays as it is
    user_packages = (data_dir / env["COMFYUI_USER_PACKAGES"]).resolve() if env.get("COMFYUI_USER_PACKAGES") else None
    settings = ServeSettings(
        comfyui_dir=comfy_dir, comfyui_python=python, data_dir=data_dir,
        listen=listen, comfyui_port=_port(port_raw, "COMFYUI_PORT"), mode=mode, extra_args=extra,
        sync_mode=sync_mode, profiles=profiles,
        sync_from=str(_pick(getattr(args, "sync_from", None), env, "MODEL_SYNC_FROM", "")),
        manifest=Path(_pick(getattr(args, "manifest", None), env, "MODEL_MANIFEST", REPO / "workflows/models.yaml")),
        workflows_dir=Path(env.get("COMFY_WORKFLOWS_DIR") or REPO / "workflows/ui"),
        user_packages=user_packages,
        manager_network_mode=str(env.get("MANAGER_NETWORK_MODE") or "auto").lower(),
        managed_comfyui=managed,
    )
    validate(settings)
    return settings


def _port(raw: str, name: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"{name}={raw!r} is not a port number (1-65535)")
    return int(raw)


def validate(s: ServeSettings) -> None:
    """Fail fast, naming the setting and what to do."""
    if not s.managed_comfyui and not (s.comfyui_dir / "main.py").is_file():
        raise ConfigError(f"COMFYUI_DIR={s.comfyui_dir} has no main.py: is it a ComfyUI checkout?")
    if not s.managed_comfyui and not os.access(s.comfyui_python, os.X_OK):
        raise ConfigError(f"COMFYUI_PYTHON={s.comfyui_python} is not an executable interpreter")
    if s.mode not in MODES:
        raise ConfigError(f"COMFYUI_MODE={s.mode!r}: use one of {', '.join(MODES)}")
    if s.manager_network_mode not in MANAGER_NETWORK_MODES:
        raise ConfigError(f"MANAGER_NETWORK_MODE={s.manager_network_mode!r}: use one of "
                          f"{', '.join(MANAGER_NETWORK_MODES)}")
    if s.sync_mode not in SYNC_MODES:
        raise ConfigError(f"MODEL_SYNC_MODE={s.sync_mode!r}: use one of {', '.join(SYNC_MODES)}")
    host, sep, port = s.listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"AUTH_PROXY_LISTEN={s.listen!r}: expected HOST:PORT, e.g. 0.0.0.0:8188")
    _port(port, "AUTH_PROXY_LISTEN")
    if int(port) == s.comfyui_port:
        raise ConfigError(f"AUTH_PROXY_LISTEN and COMFYUI_PORT both use port {s.comfyui_port}: "
                          "ComfyUI must listen on a port of its own behind the proxy")
    for flag in ("--listen", "--port"):
        if flag in s.extra_args:
            raise ConfigError(f"COMFYUI_EXTRA_ARGS contains {flag}: ComfyUI's address is set by "
                              "COMFYUI_PORT and must stay on loopback behind the proxy")
    if s.sync_mode != "off" and s.profiles and not s.manifest.is_file():
        raise ConfigError(f"MODEL_MANIFEST={s.manifest} does not exist (needed for MODEL_PROFILES)")
    if s.sync_from and not s.sync_from.split("://")[0] in ("oss", "s3", "hf", "https"):
        raise ConfigError(f"MODEL_SYNC_FROM={s.sync_from!r}: expected oss://bucket/prefix or s3://bucket/prefix")
