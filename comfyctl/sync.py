"""`comfyctl sync`: sync models now, while ComfyUI serves, with no restart (in the
container: `docker compose exec comfy comfyctl sync`). It runs what the start ran: the
plan `comfyctl serve` kept in the run folder (comfyctl.sync_job), with progress on the
terminal; new files appear in ComfyUI's model lists at the page's next refresh."""

from __future__ import annotations

import argparse
import logging

from comfy_stack import run_files
from comfy_stack import variables as v
from comfy_stack.env import Env
from comfyctl import sync_job
from comfyctl.errors import ComfyctlError, ConfigError, SyncFailed

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help=f"env {v.COMFY_DATA_DIR.name}: the data folder `serve` uses")


def main(args: argparse.Namespace) -> int:
    try:
        data_dir = Env(error=ConfigError).get(v.COMFY_DATA_DIR, args.data_dir)
        plan_file = run_files.run_dir(data_dir) / run_files.SYNC_PLAN
        plan = sync_job.Plan.load(plan_file)
        if plan is None:
            raise ConfigError(
                f"no sync plan at {plan_file}: start the stack with `comfyctl serve` (the image does) "
                f"with MODEL_PROFILES or MODEL_SYNC_FROM set, and run this where it runs"
            )
        code = sync_job.run_plan(plan)
        if code != 0:
            raise SyncFailed(f"the model sync failed (exit {code}); its message is above")
    except ComfyctlError as exc:
        log.error("%s", exc)
        return exc.exit_code
    return 0
