"""`comfyctl serve`: the whole stack from a ComfyUI checkout; the image's entrypoint runs
the same code. Validate, sync models, write extra_model_paths.yaml, install the bundled
workflows, then hand over to supervisord (ComfyUI on loopback, the proxy in front)."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from auth_proxy import extension
from comfy_stack import run_files, startup, variables
from comfy_stack.env import add_flags, for_child
from comfyctl import (
    bootstrap,
    comfy_users,
    config,
    manager_config,
    model_paths,
    modes,
    numba_cache,
    supervisor,
    sync_job,
    workflows_install,
)
from comfyctl.errors import ComfyctlError, MissingProgram, SyncFailed
from model_sync import progress as sync_progress

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flags(p, variables.SERVE)
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="prepare everything, print supervisord's configuration, start nothing",
    )


@contextmanager
def gate_while_syncing(proxy_env: dict[str, str]) -> Iterator[None]:
    """The gate, up while a blocking sync runs: else nothing would answer on the port for as
    long as the sync takes. Its /readyz says 503 and what the start waits for ("syncing
    models: 12.4 of 28.0 GB"), its page shows the progress, /healthz keeps a liveness probe
    content; it is stopped before supervisord starts it again with ComfyUI."""
    cmd = [
        sys.executable,
        "-m",
        supervisor.PREFIX_WRAPPER,
        "auth_proxy",
        "--",
        sys.executable,
        "-m",
        "auth_proxy",
    ]
    proc = subprocess.Popen(cmd, env=for_child(proxy_env))
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def prepare(s: config.ServeSettings, rec: startup.Recorder | None = None) -> tuple[Path, str]:
    """Everything before supervisord, each step a timed phase; returns the run directory and
    the config text."""
    rec = rec or startup.Recorder()
    with rec.phase("data folders"):
        for sub in ("models", "input", "output", "user", "auth", "custom_nodes"):
            (s.data_dir / sub).mkdir(parents=True, exist_ok=True)
        if s.user_packages:
            s.user_packages.mkdir(parents=True, exist_ok=True)
        if not os.access(s.data_dir, os.W_OK):
            raise config.ConfigError(f"the data directory {s.data_dir} is not writable by this user")
        run_dir = s.run_dir
        run_dir.mkdir(exist_ok=True)
        rec.attach(run_dir / startup.SERVE_FILE)
        # the last start's ComfyUI timings are not this start's
        (run_dir / startup.COMFYUI_FILE).unlink(missing_ok=True)
    if s.numba_cache:
        with rec.phase("numba's cache from the image"):
            if s.numba_cache.is_dir():
                numba_cache.seed(s.numba_cache, run_dir / run_files.NUMBA_CACHE)
            else:
                log.warning("COMFY_NUMBA_CACHE=%s is not a folder: numba compiles at start", s.numba_cache)
    progress = sync_progress.path_for(s.models_dir)
    cmds = sync_job.commands(s.manifest, s.models_dir, s.profiles, s.sync_from, progress)
    # The sync finds the workflow templates in ComfyUI's interpreter when they are not in its
    # own; --comfyui-python or a made ComfyUI names one the environment does not.
    plan = sync_job.Plan(cmds, {"COMFYUI_PYTHON": str(s.comfyui_python)})
    plan_file = run_dir / run_files.SYNC_PLAN
    if cmds:
        plan.save(plan_file)  # what `comfyctl sync`, the admin's action and the interval run
    else:
        plan_file.unlink(missing_ok=True)
        log.info("no MODEL_PROFILES and no MODEL_SYNC_FROM: no models to sync")
    proxy_env = {
        "AUTH_PROXY_LISTEN": str(s.listen),
        "AUTH_PROXY_UPSTREAM": f"http://127.0.0.1:{s.comfyui_port}",
        "AUTH_PROXY_STATE_DIR": str(s.proxy_state_dir),
        "COMFY_JOBS_DIR": str(s.proxy_jobs_dir),
        "MODEL_SYNC_PROGRESS_FILE": str(progress),
        "COMFY_RUN_DIR": str(run_dir),
        "AUTH_PROXY_INPUT_DIR": str(s.data_dir / "input"),
    }
    if s.sync_mode == "block" and cmds:
        with rec.phase("model sync (MODEL_SYNC_MODE=block)"), gate_while_syncing(proxy_env):
            log.info("syncing models before starting (MODEL_SYNC_MODE=block)")
            code = sync_job.run_plan(plan)
        if code != 0:
            raise SyncFailed(
                f"the model sync failed (exit {code}); fix the cause above, or set "
                "MODEL_SYNC_MODE=background to start anyway"
            )
    with rec.phase("model paths and Manager's config"):
        model_paths.write(
            s.models_dir,
            run_dir / "extra_model_paths.yaml",
            s.data_dir / "custom_nodes",
            extension.CUSTOM_NODES,
        )
        manager_config.start(s.data_dir / "user", s.manager_network_mode)
    with rec.phase("ComfyUI's users (--multi-user)"):
        comfy_users.ensure_default_user(s.data_dir / "user")
    with rec.phase("bundled workflows"):
        report = workflows_install.install(s.workflows_dir, s.data_dir / "user" / "default" / "workflows")
    log.info(
        "workflows: %d installed, %d updated, %d of yours kept",
        len(report.installed),
        len(report.updated),
        len(report.kept_user_edits),
    )
    with rec.phase("ComfyUI's flags (GPU and attention)"):
        comfy_args = modes.comfyui_flags(
            s.mode, s.comfyui_python, s.extra_args, s.attention, cuda_version=s.cuda_version
        )
    with rec.phase("supervisord's configuration"):
        text = supervisor.render(s, comfy_args, run_dir, proxy_env)
        if cmds and (s.sync_mode == "background" or s.sync_interval):
            # background: a sync now; MODEL_SYNC_INTERVAL: again every so many seconds
            loop = ["--every", str(s.sync_interval)] if s.sync_interval else []
            wait = ["--wait-first"] if s.sync_interval and s.sync_mode != "background" else []
            cmd = [sys.executable, "-m", "comfyctl.sync_job", "--plan", str(plan_file), *loop, *wait]
            text += supervisor.oneshot("model_sync", cmd, plan.env)
        supervisor.write(text, run_dir / "supervisord.conf")
    rec.finish()
    return run_dir, text


def main(args: argparse.Namespace) -> int:
    rec = startup.Recorder()
    try:
        with rec.phase("settings"):
            s = config.load(args)
        if s.bootstrap:
            with rec.phase("making ComfyUI (no COMFYUI_DIR)"):
                bootstrap.ensure(s)
        run_dir, text = prepare(s, rec)
        if args.dry_run:
            print(text)
            return 0
        supervisord = shutil.which("supervisord") or shutil.which(
            "supervisord", path=str(Path(sys.executable).parent)
        )
        if not supervisord:
            raise MissingProgram("supervisord is not installed: pip install supervisor")
        log.info("starting ComfyUI on 127.0.0.1:%d behind the proxy on %s", s.comfyui_port, s.listen)
        sys.stdout.flush()
        supervisor.wake_when_up(run_dir)
        os.execv(supervisord, [supervisord, "-n", "-c", str(run_dir / "supervisord.conf")])
    except ComfyctlError as exc:
        log.error("%s", exc)
        return exc.exit_code
    return 0
