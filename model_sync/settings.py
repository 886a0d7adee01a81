"""Settings, read once into a frozen dataclass: CLI flag > environment > default."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError

MiB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    models_dir: Path
    manifest: Path | None = None
    profiles: tuple[str, ...] = ()
    from_prefix: str | None = None
    dry_run: bool = False
    verify: bool = False
    delete: bool = False
    progress_file: Path | None = None
    part_size: int = 64 * MiB            # one ranged GET; also the most a crash can cost per stream
    range_threads: int = 4               # parallel ranges within one large file
    file_workers: int = 4                # files transferred at once
    stat_workers: int = 32               # HEAD requests at once during planning
    retries: int = 5                     # attempts per file after the first
    backoff: float = 0.5                 # first retry delay in seconds, doubled each time
    timeout: float = 30.0                # connect/read timeout per request
    lock_stale_after: float = 120.0      # a lock not heartbeated for this long is abandoned
    lock_log_every: float = 30.0         # "still waiting for ..." cadence
    lock_timeout: float = 6 * 3600.0     # give up waiting for another process after this
    progress_interval: float = 10.0      # JSON progress lines when stderr is not a terminal
    delete_max: int = 20                 # --delete refuses to remove more files than this
    min_free_margin: int = 256 * MiB     # free space kept beyond what the transfers need
    templates_dir: Path | None = None    # official templates for template:NAME (else found installed)
    comfyui_python: Path | None = None   # ComfyUI's interpreter, asked where the templates are

    @property
    def state_dir(self) -> Path:
        return self.models_dir / ".model_sync"

    @property
    def progress_path(self) -> Path:
        return self.progress_file or self.state_dir / "progress.json"


_ENV_NUMBERS = {
    "part_size": "MODEL_SYNC_PART_SIZE", "range_threads": "MODEL_SYNC_RANGE_THREADS",
    "file_workers": "MODEL_SYNC_FILE_WORKERS", "stat_workers": "MODEL_SYNC_STAT_WORKERS",
    "retries": "MODEL_SYNC_RETRIES", "backoff": "MODEL_SYNC_BACKOFF",
    "timeout": "MODEL_SYNC_TIMEOUT", "lock_stale_after": "MODEL_SYNC_LOCK_STALE_AFTER",
    "lock_log_every": "MODEL_SYNC_LOCK_LOG_EVERY", "lock_timeout": "MODEL_SYNC_LOCK_TIMEOUT",
    "progress_interval": "MODEL_SYNC_PROGRESS_INTERVAL", "delete_max": "MODEL_SYNC_DELETE_MAX",
    "min_free_margin": "MODEL_SYNC_MIN_FREE_MARGIN",
}


def load_settings(env: dict[str, str] | None = None, **flags) -> Settings:
    """Build Settings from CLI flags (None = not given) over the environment."""
    env = dict(os.environ if env is None else env)
    values: dict = {}
    for name, var in _ENV_NUMBERS.items():
        raw = env.get(var)
        if raw:
            kind = type(getattr(Settings, name))
            try:
                values[name] = kind(raw)
            except ValueError:
                raise UsageError(f"{var}={raw!r} is not a valid {kind.__name__}") from None
            if values[name] < 0 or (name in ("part_size", "range_threads", "file_workers",
                                             "stat_workers") and values[name] < 1):
                raise UsageError(f"{var}={raw!r} is out of range")
    profiles = flags.pop("profiles", None) or []
    if not profiles and env.get("MODEL_PROFILES"):
        profiles = [p for p in env["MODEL_PROFILES"].split(",")]
    values["profiles"] = tuple(p.strip() for p in profiles if p.strip())
    values["from_prefix"] = flags.pop("from_prefix", None) or env.get("MODEL_SYNC_FROM") or None
    progress = flags.pop("progress_file", None) or env.get("MODEL_SYNC_PROGRESS_FILE")
    values["progress_file"] = Path(progress) if progress else None
    templates = flags.pop("templates_dir", None) or env.get("MODEL_SYNC_TEMPLATES_DIR")
    values["templates_dir"] = Path(templates) if templates else None
    values["comfyui_python"] = Path(env["COMFYUI_PYTHON"]) if env.get("COMFYUI_PYTHON") else None
    models_dir = flags.pop("models_dir", None)
    if not models_dir:
        raise UsageError("no models directory: pass --models-dir DIR")
    values["models_dir"] = Path(models_dir).absolute()
    manifest = flags.pop("manifest", None)
    values["manifest"] = Path(manifest) if manifest else None
    for key in ("dry_run", "verify", "delete"):
        values[key] = bool(flags.pop(key, False))
    if flags:
        raise TypeError(f"unknown settings: {sorted(flags)}")
    return Settings(**values)
