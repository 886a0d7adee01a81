"""Settings, read once into a frozen dataclass: CLI flag > environment > default.

Each variable is declared once, with its default and doc line, in comfy_stack.variables;
the backends receive what they need here (endpoints, credentials) instead of reading the
environment themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from comfy_stack import variables as v
from comfy_stack.env import Env

from .errors import UsageError
from .progress import path_for


@dataclass(frozen=True)
class Storage:
    """Where the stores are and how to sign in; secrets stay out of the repr (and so the logs)."""

    oss_endpoint: str = ""
    oss_access_key_id: str = ""
    oss_access_key_secret: str = field(default="", repr=False)
    oss_session_token: str = field(default="", repr=False)
    oss_ecs_ram_role: str = ""
    oss_ecs_metadata_url: str = v.OSS_ECS_METADATA_URL.default
    # ACK RRSA: alibabacloud-credentials reads the role and token file itself; this says
    # whether the cluster injected them.
    oss_rrsa: bool = False
    s3_endpoint: str = ""
    hf_token: str = field(default="", repr=False)
    hf_endpoint: str = ""


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
    part_size: int = v.MODEL_SYNC_PART_SIZE.default  # also the most a crash can cost per stream
    range_threads: int = v.MODEL_SYNC_RANGE_THREADS.default
    file_workers: int = v.MODEL_SYNC_FILE_WORKERS.default
    stat_workers: int = v.MODEL_SYNC_STAT_WORKERS.default
    retries: int = v.MODEL_SYNC_RETRIES.default
    backoff: float = v.MODEL_SYNC_BACKOFF.default
    timeout: float = v.MODEL_SYNC_TIMEOUT.default
    lock_stale_after: float = v.MODEL_SYNC_LOCK_STALE_AFTER.default
    lock_log_every: float = v.MODEL_SYNC_LOCK_LOG_EVERY.default
    lock_timeout: float = v.MODEL_SYNC_LOCK_TIMEOUT.default
    progress_interval: float = v.MODEL_SYNC_PROGRESS_INTERVAL.default
    delete_max: int = v.MODEL_SYNC_DELETE_MAX.default
    min_free_margin: int = v.MODEL_SYNC_MIN_FREE_MARGIN.default
    storage: Storage = Storage()
    templates_dir: Path | None = None  # official templates for template:NAME (else found installed)
    comfyui_python: Path | None = None  # ComfyUI's interpreter, asked where the templates are

    @property
    def state_dir(self) -> Path:
        return self.models_dir / ".model_sync"

    @property
    def progress_path(self) -> Path:
        return self.progress_file or path_for(self.models_dir)


def load_storage(env: Env) -> Storage:
    return Storage(
        oss_endpoint=env.get(v.OSS_ENDPOINT),
        oss_access_key_id=env.get(v.OSS_ACCESS_KEY_ID),
        oss_access_key_secret=env.get(v.OSS_ACCESS_KEY_SECRET),
        oss_session_token=env.get(v.OSS_SESSION_TOKEN),
        oss_ecs_ram_role=env.get(v.OSS_ECS_RAM_ROLE),
        oss_ecs_metadata_url=env.get(v.OSS_ECS_METADATA_URL),
        oss_rrsa=bool(env.raw(v.ALIBABA_CLOUD_ROLE_ARN) and env.raw(v.ALIBABA_CLOUD_OIDC_TOKEN_FILE)),
        s3_endpoint=env.get(v.AWS_ENDPOINT_URL),
        hf_token=env.get(v.HF_TOKEN),
        hf_endpoint=env.get(v.HF_ENDPOINT),
    )


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    models_dir: str | Path | None = None,
    manifest: str | Path | None = None,
    profiles: list[str] | None = None,
    from_prefix: str | None = None,
    progress_file: str | Path | None = None,
    dry_run: bool = False,
    verify: bool = False,
    delete: bool = False,
    templates_dir: str | Path | None = None,
) -> Settings:
    """Build Settings from CLI flags (None = not given) over the environment."""
    env = Env(environ, error=UsageError)
    if not models_dir:
        raise UsageError("no models directory: pass --models-dir DIR")
    progress = env.get(v.MODEL_SYNC_PROGRESS_FILE, progress_file and str(progress_file))
    return Settings(
        models_dir=Path(models_dir).absolute(),
        manifest=Path(manifest) if manifest else None,
        profiles=env.get(v.MODEL_PROFILES, profiles),
        from_prefix=env.get(v.MODEL_SYNC_FROM, from_prefix) or None,
        dry_run=dry_run,
        verify=verify,
        delete=delete,
        progress_file=progress,
        part_size=env.get(v.MODEL_SYNC_PART_SIZE),
        range_threads=env.get(v.MODEL_SYNC_RANGE_THREADS),
        file_workers=env.get(v.MODEL_SYNC_FILE_WORKERS),
        stat_workers=env.get(v.MODEL_SYNC_STAT_WORKERS),
        retries=env.get(v.MODEL_SYNC_RETRIES),
        backoff=env.get(v.MODEL_SYNC_BACKOFF),
        timeout=env.get(v.MODEL_SYNC_TIMEOUT),
        lock_stale_after=env.get(v.MODEL_SYNC_LOCK_STALE_AFTER),
        lock_log_every=env.get(v.MODEL_SYNC_LOCK_LOG_EVERY),
        lock_timeout=env.get(v.MODEL_SYNC_LOCK_TIMEOUT),
        progress_interval=env.get(v.MODEL_SYNC_PROGRESS_INTERVAL),
        delete_max=env.get(v.MODEL_SYNC_DELETE_MAX),
        min_free_margin=env.get(v.MODEL_SYNC_MIN_FREE_MARGIN),
        storage=load_storage(env),
        templates_dir=env.get(v.MODEL_SYNC_TEMPLATES_DIR, templates_dir and str(templates_dir)),
        comfyui_python=env.get(v.COMFYUI_PYTHON),
    )
