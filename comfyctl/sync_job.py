"""The model sync that `serve` runs at start, and again while ComfyUI serves: on demand
(`comfyctl sync`, the admin's "sync models now") and every MODEL_SYNC_INTERVAL seconds.

What a sync runs: the manifest's files for MODEL_PROFILES, then, when MODEL_SYNC_FROM is a
bucket prefix, every other model under it (how a user adds their own model: upload it under
the prefix and sync). `serve` resolves it once from flags, variables and defaults and keeps
it as the plan (`<run>/sync.json`), so that a sync started later runs exactly what the start
ran. Files are placed atomically (model_sync), so a running job never reads half a file,
and ComfyUI lists a new model at its next refresh: it rescans a folder whose modification
time changed. Nothing is deleted locally (the sync never passes --delete).

Runs in-process for MODEL_SYNC_MODE=block, and as `python -m comfyctl.sync_job --plan FILE
[--every SECONDS [--wait-first]]` under supervisord and from the proxy.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from comfy_stack.env import for_child
from comfy_stack.files import PRIVATE, read_json, write_json
from model_sync.errors import UnplaceableError

log = logging.getLogger(__name__)


def commands(
    manifest: Path, models_dir: Path, profiles: tuple[str, ...], sync_from: str, progress_file: Path
) -> list[list[str]]:
    base = [sys.executable, "-m", "model_sync"]
    cmds = []
    if profiles:
        cmd = base + [
            "sync",
            "--manifest",
            str(manifest),
            "--models-dir",
            str(models_dir),
            "--progress-file",
            str(progress_file),
        ]
        for p in profiles:
            cmd += ["--profile", p]
        if sync_from:
            cmd += ["--from", sync_from]
        cmds.append(cmd)
    if sync_from.startswith(("oss://", "s3://")):
        cmds.append(base + ["mirror", sync_from, str(models_dir), "--progress-file", str(progress_file)])
    return cmds


@dataclass(frozen=True)
class Plan:
    """What a sync runs: the commands in order and what is added to their environment."""

    commands: list[list[str]]
    env: dict[str, str]

    def save(self, path: Path) -> Path:
        # private: the environment may one day hold what a sync needs to reach its bucket
        return write_json(path, asdict(self), indent=1, mode=PRIVATE)

    @classmethod
    def load(cls, path: Path) -> Plan | None:
        data = read_json(path)
        if data is None:
            return None
        try:
            return cls(
                [[str(a) for a in c] for c in data["commands"]],
                {str(k): str(v) for k, v in data["env"].items()},
            )
        except (KeyError, TypeError, AttributeError):
            return None


def run(cmds: list[list[str]], env: dict[str, str] | None = None) -> int:
    """Each command in turn with this environment and `env` added; the first failure's code.

    A partial sync (some objects of the bucket cannot be placed under their names, every
    other file is) is no failure here: ComfyUI starts with the files that are there, and
    the objects left out are named in the log."""
    for cmd in cmds:
        log.info("model sync: %s", " ".join(cmd[2:4]))
        code = subprocess.run(cmd, env=for_child(env or {})).returncode
        if code == UnplaceableError.exit_code:
            log.error(
                "model sync: PARTIAL (exit %d): some objects could not be placed and were skipped; "
                "each is named above with what to do; starting with every other file in place",
                code,
            )
        elif code != 0:
            log.error("model sync failed with exit code %d (see docs/sync-semantics.md)", code)
            return code
    return 0


def run_plan(plan: Plan) -> int:
    started = time.monotonic()
    code = run(plan.commands, plan.env)
    if code == 0:
        log.info(
            "model sync done in %.1f s: new models show in ComfyUI's lists at its next refresh, no restart",
            time.monotonic() - started,
        )
    return code


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="python -m comfyctl.sync_job")
    p.add_argument("--plan", type=Path, required=True, help="the plan serve wrote (<run>/sync.json)")
    p.add_argument("--every", type=float, default=0, help="sync again this many seconds after each sync")
    p.add_argument("--wait-first", action="store_true", help="wait --every seconds before the first")
    args = p.parse_args(argv)
    plan = Plan.load(args.plan)
    if plan is None:
        log.error("%s is not a sync plan: start the stack with `comfyctl serve` first", args.plan)
        return 2
    if args.every <= 0:
        return run_plan(plan)
    if args.wait_first:
        time.sleep(args.every)
    while True:
        # a failed sync is logged and tried again at the next interval: the stack keeps serving
        run_plan(plan)
        log.info("next model sync in %.0f s (MODEL_SYNC_INTERVAL)", args.every)
        time.sleep(args.every)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
