"""The start-up model sync: the manifest's files for MODEL_PROFILES, then, when
MODEL_SYNC_FROM is a bucket prefix, every other model under it (how a user adds their own
model: upload it under the prefix and restart). Runs in-process for
MODEL_SYNC_MODE=block, and as `python -m comfyctl.sync_job` under supervisord for
`background`."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

from comfy_stack.env import for_child
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


def main(argv: list[str]) -> int:
    # argv: MANIFEST MODELS_DIR PROGRESS_FILE SYNC_FROM [PROFILE ...]
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    manifest, models_dir, progress, sync_from, *profiles = argv
    return run(commands(Path(manifest), Path(models_dir), tuple(profiles), sync_from, Path(progress)))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
