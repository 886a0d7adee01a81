"""The job ledger's and worker's settings, read once into a frozen object that everything
else receives. The variables (name, default, doc line) are declared in
comfy_stack/variables.py; docs/api.md's table is generated from them."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from comfy_jobs.errors import ConfigError
from comfy_jobs.podcost import PodRef
from comfy_stack import variables as v
from comfy_stack.env import Env
from model_sync.settings import Storage, load_storage


@dataclass(frozen=True)
class JobSettings:
    jobs_dir: Path = v.COMFY_JOBS_DIR.default
    database_url: str = ""
    max_attempts: int = v.COMFY_JOB_MAX_ATTEMPTS.default
    queue_limit: int = v.COMFY_QUEUE_LIMIT.default
    max_waiting_per_user: int = v.COMFY_JOBS_MAX_WAITING_PER_USER.default  # 0: no limit
    outputs_to: str = ""
    lease_s: float = v.COMFY_JOB_LEASE_SECONDS.default
    run_worker: bool = True
    worker_id: str = ""
    worker_url: str = ""  # this worker's proxy as gateways reach it (UI pinning)
    models_dir: Path | None = None  # placement: report what model_sync placed here
    comfyui_url: str = v.COMFY_WORKER_COMFYUI_URL.default
    pod: PodRef | None = None  # the worker's own pod, for its pod-deletion-cost
    retention_days: float = v.COMFY_JOBS_RETENTION_DAYS.default
    webhook_url: str = ""
    webhook_secret: str = ""
    asset_max_bytes: int = v.COMFY_ASSET_MAX_MB.default << 20
    member_denied_nodes: tuple[str, ...] = ()  # besides comfy_jobs.member_policy.DENIED
    # endpoints and credentials of COMFY_OUTPUTS_TO's store, as the model sync reads them
    storage: Storage = Storage()

    @property
    def gateway(self) -> bool:
        """A cluster's gateway: no worker in this process, and the ledger shared with the
        workers beside each ComfyUI (so no ComfyUI of its own either)."""
        return not self.run_worker and bool(self.database_url)

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.jobs_dir / 'ledger.db'}"

    @property
    def blobs_dir(self) -> Path:
        return self.jobs_dir / "blobs"


def _pod(env: Env) -> PodRef | None:
    name, host = env.get(v.COMFY_POD_NAME).strip(), env.get(v.KUBERNETES_SERVICE_HOST).strip()
    if not name or not host:
        return None
    host = f"[{host}]" if ":" in host else host  # an IPv6 service address
    return PodRef(
        f"https://{host}:{env.get(v.KUBERNETES_SERVICE_PORT).strip()}",
        env.get(v.COMFY_POD_NAMESPACE).strip(),
        name,
    )


def load_settings(environ: Mapping[str, str] | None = None, jobs_dir: Path | None = None) -> JobSettings:
    """`jobs_dir`: the program's own default when COMFY_JOBS_DIR is not set (comfyctl serve
    keeps it in its data directory)."""
    env = Env(environ, error=ConfigError)
    url, secret = env.get(v.COMFY_WEBHOOK_URL).strip(), env.get(v.COMFY_WEBHOOK_SECRET).strip()
    if url and not secret.startswith("whsec_"):
        raise ConfigError(
            "COMFY_WEBHOOK_URL needs COMFY_WEBHOOK_SECRET=whsec_<base64>, the Standard "
            "Webhooks secret that receivers verify the signatures with"
        )
    outputs_to = env.get(v.COMFY_OUTPUTS_TO).strip().rstrip("/")
    if outputs_to and not outputs_to.startswith(("oss://", "s3://")):
        raise ConfigError(
            f"COMFY_OUTPUTS_TO={outputs_to!r}: expected oss://bucket/prefix or s3://bucket/prefix"
        )
    return JobSettings(
        jobs_dir=env.get(v.COMFY_JOBS_DIR) if env.is_set(v.COMFY_JOBS_DIR) or jobs_dir is None else jobs_dir,
        database_url=env.get(v.COMFY_JOBS_DATABASE_URL).strip(),
        max_attempts=env.get(v.COMFY_JOB_MAX_ATTEMPTS),
        queue_limit=env.get(v.COMFY_QUEUE_LIMIT),
        max_waiting_per_user=env.get(v.COMFY_JOBS_MAX_WAITING_PER_USER),
        outputs_to=outputs_to,
        lease_s=env.get(v.COMFY_JOB_LEASE_SECONDS),
        run_worker=env.get(v.COMFY_JOBS_WORKER) == "1",
        worker_id=env.get(v.COMFY_JOBS_WORKER_ID).strip() or socket.gethostname(),
        worker_url=env.get(v.COMFY_WORKER_URL).strip().rstrip("/"),
        models_dir=Path(models) if (models := env.get(v.COMFY_WORKER_MODELS_DIR).strip()) else None,
        comfyui_url=env.get(v.COMFY_WORKER_COMFYUI_URL),
        pod=_pod(env),
        retention_days=env.get(v.COMFY_JOBS_RETENTION_DAYS),
        webhook_url=url,
        webhook_secret=secret,
        asset_max_bytes=env.get(v.COMFY_ASSET_MAX_MB) << 20,
        member_denied_nodes=env.get(v.COMFY_MEMBER_DENIED_NODES),
        storage=load_storage(env),
    )
