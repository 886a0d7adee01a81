"""Every environment variable comfy-stack reads, each declared once: name, default, doc line.

The programs build their settings from these (through `comfy_stack.env.Env`) and never read
`os.environ` themselves; the tables in docs/ are generated from the groups at the bottom
(`make settings-docs`), and a test fails when they drift. To add a setting: declare it here,
add it to its program's group, read it in that program's settings loader, regenerate the docs.
"""

from __future__ import annotations

from pathlib import Path

from comfy_stack.env import (
    Address,
    Row,
    Var,
    address,
    choice,
    http_url,
    integer,
    networks,
    number,
    path,
    port,
    shell_words,
    words,
)

REPO = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024

# --- the login proxy (python -m auth_proxy) ---------------------------------------------------
AUTH_PROXY_LISTEN = Var(
    "AUTH_PROXY_LISTEN",
    Address("0.0.0.0", 8188),
    "the public address: where the login proxy listens (HOST:PORT)",
    address,
)
AUTH_PROXY_UPSTREAM = Var("AUTH_PROXY_UPSTREAM", "http://127.0.0.1:8189", "ComfyUI's own address", http_url)
AUTH_PROXY_STATE_DIR = Var(
    "AUTH_PROXY_STATE_DIR",
    Path("/data/auth"),
    "the audit log, and an older release's account files (taken into the job ledger's database at the first start)",
    path,
    shown_default="`/data/auth` (`comfyctl serve`: `auth/` in the data directory)",
)
COMFY_ADMIN_USER = Var("COMFY_ADMIN_USER", "admin", "the account's name")
COMFY_ADMIN_PASSWORD: Var[str | None] = Var(
    "COMFY_ADMIN_PASSWORD",
    None,
    "the password (8 characters or more); replaces the stored one at start",
    file_form=True,
)
AUTH_PROXY_SESSION_HOURS = Var(
    "AUTH_PROXY_SESSION_HOURS",
    12.0,
    "browser session lifetime, hours",
    number(minimum=0),
    shown_default="`12`",
)
AUTH_PROXY_SECURE_COOKIES = Var(
    "AUTH_PROXY_SECURE_COOKIES",
    "auto",
    "`auto`: `Secure` cookies when the request came over HTTPS (including `X-Forwarded-Proto: "
    "https` from an ingress); `always`; `never`",
    choice("auto", "always", "never"),
)
AUTH_PROXY_LOGIN_MAX_FAILURES = Var(
    "AUTH_PROXY_LOGIN_MAX_FAILURES",
    5,
    "failed logins per client before delays start (the admin's name across all clients gets ten "
    "times as many)",
    integer(minimum=1),
)
AUTH_PROXY_MAX_PENDING_LOGINS = Var(
    "AUTH_PROXY_MAX_PENDING_LOGINS",
    8,
    "password checks waiting or running at once; more are told `429` with `Retry-After: 1`",
    integer(minimum=1),
)
AUTH_PROXY_ALLOWED_HOSTS: Var[tuple[str, ...]] = Var(
    "AUTH_PROXY_ALLOWED_HOSTS",
    (),
    "host names this server answers to besides the built-in ones (docs/auth.md), separated by "
    "commas or spaces; `*.example.com` matches subdomains; `*` turns the check off",
    words,
)
AUTH_PROXY_TRUSTED_PROXIES: Var[tuple] = Var(
    "AUTH_PROXY_TRUSTED_PROXIES",
    (),
    "addresses or networks (`10.0.0.0/8`, `127.0.0.1`) of reverse proxies whose `X-Forwarded-For`, "
    "`-Host` and `-Proto` are believed",
    networks,
)
AUTH_PROXY_HEADER_TIMEOUT = Var(
    "AUTH_PROXY_HEADER_TIMEOUT",
    15.0,
    "seconds a connection has to send a request's headers; an idle keep-alive connection is "
    "closed after as long",
    number(minimum=0.1),
    shown_default="`15`",
)
AUTH_PROXY_MAX_CLIENT_CONNECTIONS = Var(
    "AUTH_PROXY_MAX_CLIENT_CONNECTIONS",
    100,
    "open connections per client address (trusted proxies are not limited); more are refused",
    integer(minimum=1),
)
AUTH_PROXY_UPSTREAM_CONNECTIONS = Var(
    "AUTH_PROXY_UPSTREAM_CONNECTIONS",
    256,
    "connections to ComfyUI at most (open WebSockets included); more requests wait for one",
    integer(minimum=1),
)
AUTH_PROXY_RELAY = Var(
    "AUTH_PROXY_RELAY",
    "splice",
    "`splice`: large plain responses (a GET answered `200` with `Content-Length`, not compressed) "
    "are moved from ComfyUI's socket to the client's inside the kernel (`os.splice`), the rest "
    "is copied; `plain`: every response is copied through the proxy",
    choice("splice", "plain"),
)

# --- the stack (comfyctl serve, the image's entrypoint) ---------------------------------------
COMFYUI_DIR: Var[Path | None] = Var(
    "COMFYUI_DIR", None, "the ComfyUI checkout", path, shown_default="image: `/opt/ComfyUI`"
)
COMFYUI_PYTHON: Var[Path | None] = Var(
    "COMFYUI_PYTHON",
    None,
    "interpreter with ComfyUI's requirements",
    path,
    shown_default="the interpreter running comfyctl",
)
COMFY_DATA_DIR = Var(
    "COMFY_DATA_DIR",
    Path("./data"),
    "models, input, output, user, auth",
    path,
    shown_default="`./data` (image: `/data`)",
)
COMFYUI_PORT = Var("COMFYUI_PORT", 8189, "ComfyUI's loopback port", port)
COMFYUI_MODE = Var(
    "COMFYUI_MODE",
    "auto",
    "`auto`, `gpu`, `lowvram`, `novram`, `cpu`",
    choice("auto", "gpu", "lowvram", "novram", "cpu"),
)
COMFYUI_ATTENTION = Var(
    "COMFYUI_ATTENTION",
    "auto",
    "ComfyUI's attention on a GPU: `auto` (ComfyUI's own choice: xformers where installed, else "
    "PyTorch SDPA), `sdpa`, `xformers`, `sage` (SageAttention); a choice whose package is missing "
    "stops the start; ignored on the CPU",
    choice("auto", "sdpa", "xformers", "sage"),
)
COMFYUI_EXTRA_ARGS: Var[tuple[str, ...]] = Var(
    "COMFYUI_EXTRA_ARGS", (), "more ComfyUI flags (not `--listen`/`--port`)", shell_words
)
MODEL_SYNC_MODE = Var(
    "MODEL_SYNC_MODE",
    "block",
    "`block`, `background`, `off`",
    choice("block", "background", "off"),
    shown_default="`block` (compose: `background`)",
)
MODEL_SYNC_INTERVAL = Var(
    "MODEL_SYNC_INTERVAL",
    0,
    "sync models again every this many seconds while ComfyUI serves (new files under "
    "MODEL_SYNC_FROM appear without a restart); `0`: only at start and on demand "
    "(`comfyctl sync`, the admin's sync action)",
    integer(minimum=0),
)
MODEL_MANIFEST = Var(
    "MODEL_MANIFEST",
    REPO / "workflows" / "models.yaml",
    "the model manifest",
    path,
    shown_default="`workflows/models.yaml`",
)
COMFY_WORKFLOWS_DIR = Var(
    "COMFY_WORKFLOWS_DIR",
    REPO / "workflows" / "ui",
    "the UI workflows copied into ComfyUI's `user/default/workflows/` at start",
    path,
    shown_default="`workflows/ui`",
)
COMFYUI_USER_PACKAGES = Var(
    "COMFYUI_USER_PACKAGES",
    "",
    "where pip puts what nodes installed through ComfyUI-Manager need, as a user install visible "
    "to ComfyUI only (relative paths are under the data directory); empty: into ComfyUI's own "
    "interpreter",
    shown_default="empty (image: `/data/python`)",
)
COMFY_NUMBA_CACHE: Var[Path | None] = Var(
    "COMFY_NUMBA_CACHE",
    None,
    "numba's compiled functions built with the image (for NUMBA_CPU_NAME=generic), copied at "
    "each start into `<data dir>/run/numba-cache` for ComfyUI, so that no pack's numba code "
    "compiles at start; empty: numba's own cache beside each package",
    path,
    shown_default="empty (image: `/opt/comfy-stack/numba-cache`)",
)
HF_HUB_OFFLINE = Var(
    "HF_HUB_OFFLINE",
    "1",
    "packs cannot download weights behind your back; the model sync, which you ask for, still "
    "reaches the hub (set it for the whole container and hf:// sources fail with exit 2)",
    shown_default="`1` in ComfyUI's environment only",
)
MANAGER_NETWORK_MODE = Var(
    "MANAGER_NETWORK_MODE",
    "auto",
    "ComfyUI-Manager's network mode: `auto` (at each start: `offline` when its channel cannot be "
    "reached, else `public`), `public`, `private`, `offline`",
    choice("auto", "public", "private", "offline"),
)
SOURCES_DIR: Var[Path | None] = Var(
    "SOURCES_DIR",
    None,
    "without `COMFYUI_DIR`: a folder of `<name>-<commit>.tar.gz` sources for the pinned ComfyUI and "
    "packs (docs/build.md); also an image build input",
    path,
    shown_default="none: from git",
)
GIT_MIRROR = Var(
    "GIT_MIRROR",
    "",
    "without `COMFYUI_DIR`: a URL prefix standing for `https://github.com/` when cloning; "
    "also an image build input",
    shown_default="none",
)
TORCH_INDEX_URL = Var(
    "TORCH_INDEX_URL",
    "",
    "without `COMFYUI_DIR`: where the torch stack comes from; also an image build input",
    shown_default="the CUDA 12.8 PyTorch index with an NVIDIA GPU, else the CPU one",
)
COMFY_BASE_PYTHON: Var[Path | None] = Var(
    "COMFY_BASE_PYTHON",
    None,
    "without `COMFYUI_DIR`: the Python 3.12 that ComfyUI's venv is made with",
    path,
    shown_default="`python3.12` on PATH",
)
CUDA_VERSION = Var(
    "CUDA_VERSION",
    "",
    "set by the CUDA image: the runtime whose minimum driver is checked at start and by `comfyctl doctor`",
    shown_default="empty (CUDA image: its CUDA version)",
)

# --- the model sync (python -m model_sync) ----------------------------------------------------
MODEL_PROFILES: Var[tuple[str, ...]] = Var(
    "MODEL_PROFILES",
    (),
    "profiles of the manifest to sync, separated by commas or spaces; "
    "`template:NAME` for the files an official ComfyUI template names",
    words,
    shown_default="empty (`model_sync sync`: every file; `comfyctl serve`: none)",
)
MODEL_SYNC_FROM = Var(
    "MODEL_SYNC_FROM",
    "",
    "`oss://bucket/prefix` or `s3://...`: take files from there, and at start copy "
    "every other model under it",
)
MODEL_SYNC_PROGRESS_FILE: Var[Path | None] = Var(
    "MODEL_SYNC_PROGRESS_FILE",
    None,
    "the sync's progress (JSON), shown on the proxy's starting page",
    path,
    shown_default="`<models dir>/.model_sync/progress.json` (image: `/data/models/...`)",
)
AUTH_PROXY_INPUT_DIR = Var(
    "AUTH_PROXY_INPUT_DIR",
    Path("/data/input"),
    "ComfyUI's input folder, where the gate lists each member's uploads (`input/<account>/`) for "
    "their node lists",
    path,
    shown_default="`/data/input` (`comfyctl serve`: `input/` in the data directory)",
)
COMFY_RUN_DIR: Var[Path | None] = Var(
    "COMFY_RUN_DIR",
    None,
    "the run folder of `comfyctl serve` (supervisord's config, the start's timed phases that "
    "/readyz shows); `serve` sets it for the proxy",
    path,
    shown_default="`<data dir>/run` (image: `/data/run`)",
)
MODEL_SYNC_PART_SIZE = Var(
    "MODEL_SYNC_PART_SIZE",
    64 * MiB,
    "bytes per ranged GET (and the most one stream can lose to a crash)",
    integer(minimum=1),
)
MODEL_SYNC_RANGE_THREADS = Var("MODEL_SYNC_RANGE_THREADS", 4, "parallel ranges per file", integer(minimum=1))
MODEL_SYNC_FILE_WORKERS = Var(
    "MODEL_SYNC_FILE_WORKERS",
    4,
    "files larger than one part at once (files of one part: this times MODEL_SYNC_RANGE_THREADS)",
    integer(minimum=1),
)
MODEL_SYNC_STAT_WORKERS = Var(
    "MODEL_SYNC_STAT_WORKERS", 32, "HEAD requests at once while planning", integer(minimum=1)
)
MODEL_SYNC_RETRIES = Var(
    "MODEL_SYNC_RETRIES", 5, "further attempts per file (and per HEAD)", integer(minimum=0)
)
MODEL_SYNC_BACKOFF = Var(
    "MODEL_SYNC_BACKOFF", 0.5, "first retry delay in seconds, doubled each time", number(minimum=0)
)
MODEL_SYNC_TIMEOUT = Var(
    "MODEL_SYNC_TIMEOUT",
    30.0,
    "connect and read timeout per request, seconds",
    number(minimum=0),
    shown_default="`30`",
)
MODEL_SYNC_LOCK_STALE_AFTER = Var(
    "MODEL_SYNC_LOCK_STALE_AFTER",
    120.0,
    "a file lock whose heartbeat stopped this many seconds ago is abandoned",
    number(minimum=0),
    shown_default="`120`",
)
MODEL_SYNC_LOCK_LOG_EVERY = Var(
    "MODEL_SYNC_LOCK_LOG_EVERY",
    30.0,
    "seconds between \"still waiting for ...\" lines",
    number(minimum=0),
    shown_default="`30`",
)
MODEL_SYNC_LOCK_TIMEOUT = Var(
    "MODEL_SYNC_LOCK_TIMEOUT",
    6 * 3600.0,
    "give up waiting for another process's lock after this many seconds",
    number(minimum=0),
    shown_default="`21600`",
)
MODEL_SYNC_PROGRESS_INTERVAL = Var(
    "MODEL_SYNC_PROGRESS_INTERVAL",
    10.0,
    "seconds between JSON progress lines when stderr is not a terminal",
    number(minimum=0),
    shown_default="`10`",
)
MODEL_SYNC_DELETE_MAX = Var(
    "MODEL_SYNC_DELETE_MAX", 20, "`--delete` refuses to remove more files than this", integer(minimum=0)
)
MODEL_SYNC_MIN_FREE_MARGIN = Var(
    "MODEL_SYNC_MIN_FREE_MARGIN",
    256 * MiB,
    "bytes kept free beyond what the transfers need",
    integer(minimum=0),
)
MODEL_SYNC_TEMPLATES_DIR: Var[Path | None] = Var(
    "MODEL_SYNC_TEMPLATES_DIR",
    None,
    "the `templates/` folder of ComfyUI's official templates package, for `template:NAME` "
    "profiles; unset: found in this interpreter, else asked of `COMFYUI_PYTHON`",
    path,
    shown_default="where ComfyUI installed it",
)

# --- storage credentials and endpoints (read by model_sync's backends) ------------------------
OSS_ENDPOINT = Var(
    "OSS_ENDPOINT", "", "required for oss://, e.g. `https://oss-cn-hangzhou-internal.aliyuncs.com`"
)
OSS_ACCESS_KEY_ID = Var("OSS_ACCESS_KEY_ID", "", "an AccessKey pair (a RAM user's, never the account's)")
OSS_ACCESS_KEY_SECRET = Var("OSS_ACCESS_KEY_SECRET", "", "the AccessKey pair's secret")
OSS_SESSION_TOKEN = Var(
    "OSS_SESSION_TOKEN", "", "with an STS token's temporary key pair", aliases=("OSS_SECURITY_TOKEN",)
)
OSS_ECS_RAM_ROLE = Var("OSS_ECS_RAM_ROLE", "", "the ECS instance RAM role's name, when no key pair is given")
OSS_ECS_METADATA_URL = Var(
    "OSS_ECS_METADATA_URL",
    "http://100.100.100.200/latest/meta-data/ram/security-credentials",
    "where role credentials are fetched",
)
ALIBABA_CLOUD_ROLE_ARN = Var("ALIBABA_CLOUD_ROLE_ARN", "", "ACK RRSA: the RAM role, injected by the cluster")
ALIBABA_CLOUD_OIDC_PROVIDER_ARN = Var(
    "ALIBABA_CLOUD_OIDC_PROVIDER_ARN", "", "ACK RRSA: the cluster's OIDC provider, injected by the cluster"
)
ALIBABA_CLOUD_OIDC_TOKEN_FILE = Var(
    "ALIBABA_CLOUD_OIDC_TOKEN_FILE", "", "ACK RRSA: the pod's OIDC token, injected by the cluster"
)
AWS_ENDPOINT_URL = Var(
    "AWS_ENDPOINT_URL",
    "",
    "an S3-compatible store's endpoint (path-style addressing when set); the other "
    "`AWS_*` variables are read by boto3 itself",
    aliases=("AWS_ENDPOINT_URL_S3",),
)
HF_TOKEN = Var(
    "HF_TOKEN",
    "",
    "a Hugging Face token, for gated or private repositories",
    aliases=("HUGGING_FACE_HUB_TOKEN",),
)
HF_ENDPOINT = Var("HF_ENDPOINT", "", "a Hugging Face hub mirror", shown_default="`https://huggingface.co`")

# --- the Comfy API v2 and its job ledger (comfy_jobs, served by the proxy) -------------------
COMFY_JOBS_DIR = Var(
    "COMFY_JOBS_DIR",
    Path("/data/jobs"),
    "the job ledger (SQLite) and the v2 assets (inputs and outputs)",
    path,
    shown_default="`/data/jobs` (`comfyctl serve`: `jobs/` in the data directory)",
)
COMFY_JOBS_DATABASE_URL = Var(
    "COMFY_JOBS_DATABASE_URL",
    "",
    "the ledger's database as an SQLAlchemy URL; a cluster's PostgreSQL "
    "(`postgresql://user:password@host:5432/db`) also keeps the proxy's "
    "tokens, account and sessions (docs/scale-out.md)",
    shown_default=("empty: `sqlite:///$COMFY_JOBS_DIR/ledger.db`"),
)
COMFY_JOB_MAX_ATTEMPTS = Var(
    "COMFY_JOB_MAX_ATTEMPTS",
    2,
    "submissions of a job to ComfyUI when ComfyUI loses the run (crash, OOM "
    "kill, restart) before the job fails with the reason",
    integer(minimum=1),
)
COMFY_QUEUE_LIMIT = Var(
    "COMFY_QUEUE_LIMIT",
    100,
    "v2 jobs queued or running at once; one more is answered `429 queue_full` with "
    "`Retry-After`; `0`: no limit",
    integer(minimum=0),
)
COMFY_MEMBER_DENIED_NODES: Var[tuple[str, ...]] = Var(
    "COMFY_MEMBER_DENIED_NODES",
    (),
    "node classes members may not run, besides the built-in list of those that reach any path, "
    "run code or change the shared server (comfy_jobs/member_policy.py); separated by commas or spaces",
    words,
)
COMFY_JOBS_MAX_WAITING_PER_USER = Var(
    "COMFY_JOBS_MAX_WAITING_PER_USER",
    100,
    "what one account may have waiting to start: its v2 jobs, and a member's prompts sent to "
    "ComfyUI's native `/prompt`; one more is answered `429` with `Retry-After`; an account's own "
    "limit (`user limit NAME N`) comes first; `0`: no limit",
    integer(minimum=0),
)
COMFY_OUTPUTS_TO = Var(
    "COMFY_OUTPUTS_TO",
    "",
    "`oss://bucket/prefix` or `s3://bucket/prefix`: outputs are also uploaded there, "
    "verified, and served from there once the local copy is gone",
)
COMFY_JOB_LEASE_SECONDS = Var(
    "COMFY_JOB_LEASE_SECONDS",
    30.0,
    "a worker's claim on a running job lasts this long unless it is renewed; "
    "then another worker resumes the job",
    number(minimum=3),
    shown_default="`30`",
)
COMFY_JOBS_WORKER = Var(
    "COMFY_JOBS_WORKER",
    "1",
    "`1`: the proxy runs the jobs on its ComfyUI; `0`: it only records them (workers elsewhere run them)",
    choice("1", "0"),
)
COMFY_JOBS_WORKER_ID = Var(
    "COMFY_JOBS_WORKER_ID", "", "this worker's name in the ledger", shown_default="the host name"
)
COMFY_WORKER_URL = Var(
    "COMFY_WORKER_URL",
    "",
    "a cluster worker's own proxy, as gateways reach it (e.g. `http://$(POD_IP):8188`): "
    "browser sessions pinned to this worker have their UI relayed there; empty: none",
)
COMFY_WORKER_MODELS_DIR = Var(
    "COMFY_WORKER_MODELS_DIR",
    "",
    "placement: the models directory whose model_sync records this worker reports; "
    "it then takes only jobs whose model files are there; empty: every job",
)
COMFY_WORKER_COMFYUI_URL = Var(
    "COMFY_WORKER_COMFYUI_URL",
    "http://127.0.0.1:8189",
    "`python -m comfy_jobs worker`: the ComfyUI it runs jobs on",
    http_url,
)
COMFY_POD_NAME = Var(
    "COMFY_POD_NAME",
    "",
    "a worker pod's own name (the downward API's `metadata.name`): the worker then sets "
    "its `pod-deletion-cost` so that scale-in removes idle pods first; empty: not in a pod",
)
COMFY_POD_NAMESPACE = Var("COMFY_POD_NAMESPACE", "default", "that pod's namespace (`metadata.namespace`)")
KUBERNETES_SERVICE_HOST = Var(
    "KUBERNETES_SERVICE_HOST", "", "the API server, as Kubernetes sets it in every pod"
)
KUBERNETES_SERVICE_PORT = Var(
    "KUBERNETES_SERVICE_PORT", "443", "the API server's port, as Kubernetes sets it"
)
COMFY_JOBS_RETENTION_DAYS = Var(
    "COMFY_JOBS_RETENTION_DAYS",
    30.0,
    "a job's `expires_at`: a queued job not started by then expires",
    number(minimum=0.001),
    shown_default="`30`",
)
COMFY_WEBHOOK_URL = Var(
    "COMFY_WEBHOOK_URL",
    "",
    "POST a signed event (Standard Webhooks) here when a job reaches a terminal state",
)
COMFY_WEBHOOK_SECRET: Var[str] = Var(
    "COMFY_WEBHOOK_SECRET",
    "",
    "the signing secret, `whsec_` and base64 (needed with COMFY_WEBHOOK_URL)",
    file_form=True,
)
COMFY_ASSET_MAX_MB = Var(
    "COMFY_ASSET_MAX_MB", 1024, "the largest upload `POST /api/v2/assets` takes, MiB", integer(minimum=1)
)

# --- comfyctl run, and the scripts that talk to a running server ------------------------------
COMFY_SERVER = Var("COMFY_SERVER", "http://127.0.0.1:8188", "the server `comfyctl run` talks to", http_url)
COMFY_TOKEN = Var("COMFY_TOKEN", "", "an API token (`python -m auth_proxy token create NAME`)")
COMFY_USER = Var("COMFY_USER", "", "a user name for HTTP Basic, when no token is given")
COMFY_PASSWORD = Var("COMFY_PASSWORD", "", "the password for HTTP Basic")
COMFYUI_URL = Var(
    "COMFYUI_URL",
    "http://127.0.0.1:8188",
    "the server whose `/object_info` `make schemas` captures",
    http_url,
)

# --- each program's variables, in the order its docs list them --------------------------------
PROXY: tuple[Row, ...] = (
    (AUTH_PROXY_LISTEN, None),
    (AUTH_PROXY_UPSTREAM, None),
    (AUTH_PROXY_STATE_DIR, None),
    (COMFY_ADMIN_USER, None),
    (COMFY_ADMIN_PASSWORD, None),
    (AUTH_PROXY_SESSION_HOURS, None),
    (AUTH_PROXY_SECURE_COOKIES, None),
    (AUTH_PROXY_LOGIN_MAX_FAILURES, None),
    (AUTH_PROXY_MAX_PENDING_LOGINS, None),
    (AUTH_PROXY_ALLOWED_HOSTS, None),
    (AUTH_PROXY_TRUSTED_PROXIES, None),
    (AUTH_PROXY_HEADER_TIMEOUT, None),
    (AUTH_PROXY_MAX_CLIENT_CONNECTIONS, None),
    (AUTH_PROXY_UPSTREAM_CONNECTIONS, None),
    (AUTH_PROXY_RELAY, None),
    (MODEL_SYNC_PROGRESS_FILE, None),
    (COMFY_RUN_DIR, None),
    (AUTH_PROXY_INPUT_DIR, None),
)
SERVE: tuple[Row, ...] = (
    (COMFYUI_DIR, "--comfyui-dir"),
    (COMFYUI_PYTHON, "--comfyui-python"),
    (COMFY_DATA_DIR, "--data-dir"),
    (AUTH_PROXY_LISTEN, "--listen"),
    (COMFYUI_PORT, "--comfyui-port"),
    (COMFYUI_MODE, "--mode"),
    (COMFYUI_ATTENTION, "--attention"),
    (COMFYUI_EXTRA_ARGS, "--extra-args"),
    (MODEL_SYNC_MODE, "--sync-mode"),
    (MODEL_SYNC_INTERVAL, "--sync-interval"),
    (MODEL_PROFILES, "--profile"),
    (MODEL_SYNC_FROM, "--sync-from"),
    (MODEL_MANIFEST, "--manifest"),
    (COMFY_WORKFLOWS_DIR, None),
    (COMFYUI_USER_PACKAGES, None),
    (COMFY_NUMBA_CACHE, None),
    (HF_HUB_OFFLINE, None),
    (CUDA_VERSION, None),
    (MANAGER_NETWORK_MODE, None),
    (SOURCES_DIR, None),
    (GIT_MIRROR, None),
    (TORCH_INDEX_URL, None),
    (COMFY_BASE_PYTHON, None),
)
SYNC: tuple[Row, ...] = (
    (MODEL_PROFILES, "--profile"),
    (MODEL_SYNC_FROM, "--from"),
    (MODEL_SYNC_PROGRESS_FILE, "--progress-file"),
    (MODEL_SYNC_PART_SIZE, None),
    (MODEL_SYNC_RANGE_THREADS, None),
    (MODEL_SYNC_FILE_WORKERS, None),
    (MODEL_SYNC_STAT_WORKERS, None),
    (MODEL_SYNC_RETRIES, None),
    (MODEL_SYNC_BACKOFF, None),
    (MODEL_SYNC_TIMEOUT, None),
    (MODEL_SYNC_LOCK_STALE_AFTER, None),
    (MODEL_SYNC_LOCK_LOG_EVERY, None),
    (MODEL_SYNC_LOCK_TIMEOUT, None),
    (MODEL_SYNC_PROGRESS_INTERVAL, None),
    (MODEL_SYNC_DELETE_MAX, None),
    (MODEL_SYNC_MIN_FREE_MARGIN, None),
    (MODEL_SYNC_TEMPLATES_DIR, "--templates-dir"),
)
STORAGE: tuple[Row, ...] = (
    (OSS_ENDPOINT, None),
    (OSS_ACCESS_KEY_ID, None),
    (OSS_ACCESS_KEY_SECRET, None),
    (OSS_SESSION_TOKEN, None),
    (OSS_ECS_RAM_ROLE, None),
    (OSS_ECS_METADATA_URL, None),
    (ALIBABA_CLOUD_ROLE_ARN, None),
    (ALIBABA_CLOUD_OIDC_PROVIDER_ARN, None),
    (ALIBABA_CLOUD_OIDC_TOKEN_FILE, None),
    (AWS_ENDPOINT_URL, None),
    (HF_TOKEN, None),
    (HF_ENDPOINT, None),
)
JOBS: tuple[Row, ...] = (
    (COMFY_JOBS_DIR, None),
    (COMFY_JOBS_DATABASE_URL, None),
    (COMFY_JOB_MAX_ATTEMPTS, None),
    (COMFY_QUEUE_LIMIT, None),
    (COMFY_MEMBER_DENIED_NODES, None),
    (COMFY_JOBS_MAX_WAITING_PER_USER, None),
    (COMFY_OUTPUTS_TO, None),
    (COMFY_JOB_LEASE_SECONDS, None),
    (COMFY_JOBS_WORKER, None),
    (COMFY_JOBS_WORKER_ID, None),
    (COMFY_WORKER_URL, None),
    (COMFY_WORKER_MODELS_DIR, None),
    (COMFY_WORKER_COMFYUI_URL, None),
    (COMFY_POD_NAME, None),
    (COMFY_POD_NAMESPACE, None),
    (KUBERNETES_SERVICE_HOST, None),
    (KUBERNETES_SERVICE_PORT, None),
    (COMFY_JOBS_RETENTION_DAYS, None),
    (COMFY_WEBHOOK_URL, None),
    (COMFY_WEBHOOK_SECRET, None),
    (COMFY_ASSET_MAX_MB, None),
)
RUN: tuple[Row, ...] = (
    (COMFY_SERVER, "--server"),
    (COMFY_TOKEN, "--token"),
    (COMFY_USER, "--user"),
    (COMFY_PASSWORD, "--password"),
    (COMFYUI_URL, None),
)

# Where each group's table stands: docs/<file> between `<!-- variables:NAME -->` and
# `<!-- /variables:NAME -->`.
DOC_TABLES: dict[str, tuple[str, tuple[Row, ...]]] = {
    "proxy": ("docs/auth.md", PROXY),
    "serve": ("docs/runtime.md", SERVE),
    "sync": ("docs/sync-semantics.md", SYNC),
    "storage": ("docs/models.md", STORAGE),
    "run": ("docs/api.md", RUN),
    "jobs": ("docs/api.md", JOBS),
}
