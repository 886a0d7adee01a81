"""Command line: `python -m model_sync sync ...`, `mirror URI DIR`, `pin --manifest F` and
`templates [NAME ...]`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

from comfy_stack import variables as v
from comfy_stack.env import flag_help

from . import template_list
from .errors import EXIT_CODES, ManifestError, SyncError, UsageError
from .manifest import EXTENSIONS, FOLDER_KEYS, load_manifest
from .pin import pin
from .planner import describe, select_files, select_mirror
from .progress import Progress
from .run import Runner, with_listing
from .settings import load_settings
from .shown import Formatter, printable
from .templates import apply_templates
from .uris import parse_uri

log = logging.getLogger("model_sync")


def build_parser() -> argparse.ArgumentParser:
    codes = "\n".join(f"  {c:>2}  {m}" for c, m in sorted(EXIT_CODES.items()))
    p = argparse.ArgumentParser(
        prog="python -m model_sync",
        description="Put model files into ComfyUI's folders, verified.",
        epilog=f"exit codes:\n{codes}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    common.add_argument(
        "--verify", action="store_true", help="re-hash present files instead of trusting their state records"
    )
    common.add_argument(
        "--delete",
        action="store_true",
        help="remove files this tool placed earlier that are no longer selected",
    )
    common.add_argument("--progress-file", help=flag_help(v.MODEL_SYNC_PROGRESS_FILE))
    common.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    s = sub.add_parser("sync", parents=[common], help="files of a manifest's profiles")
    s.add_argument("--manifest", required=True)
    s.add_argument("--models-dir", required=True)
    s.add_argument("--profile", action="append", dest="profiles", help=flag_help(v.MODEL_PROFILES))
    s.add_argument("--from", dest="from_prefix", help=flag_help(v.MODEL_SYNC_FROM))
    s.add_argument("--templates-dir", help=flag_help(v.MODEL_SYNC_TEMPLATES_DIR))
    m = sub.add_parser("mirror", parents=[common], help="a whole oss:// or s3:// prefix of <folder>/<path>")
    m.add_argument("source")
    m.add_argument("models_dir")
    pn = sub.add_parser("pin", help="write sources' sizes, sha256 and hub commits into a manifest")
    pn.add_argument("--manifest", required=True)
    pn.add_argument("--profile", action="append", dest="profiles", help="only these profiles (repeatable)")
    pn.add_argument(
        "--update", action="store_true", help="also replace sizes/sha256 that no longer match their sources"
    )
    pn.add_argument("--dry-run", action="store_true", help="print what would change, write nothing")
    pn.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    template_list.add_arguments(
        sub.add_parser("templates", help="ComfyUI's official templates, usable as --profile template:NAME")
    )
    return p


def run_pin(args) -> int:
    with tempfile.TemporaryDirectory() as scratch:  # pin reads sources only; nothing lands here
        settings = load_settings(models_dir=scratch, manifest=args.manifest, profiles=args.profiles)
        runner = Runner(settings, Progress(None, settings.progress_interval))
        changes = pin(
            Path(args.manifest), settings.profiles, runner.stat_all, update=args.update, dry_run=args.dry_run
        )
    for change in changes:
        print(change)
    verb = "would change" if args.dry_run else "changed"
    print(f"{len(changes)} value(s) {verb} in {args.manifest}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, handlers=[handler])
    # The libraries log every retried request, oss2 with a traceback at ERROR level; the
    # retry loop here logs each failure once, with what happens next.
    for noisy in ("botocore", "boto3", "urllib3", "oss2", "credentials"):
        logging.getLogger(noisy).setLevel(
            logging.WARNING if noisy in ("botocore", "boto3", "urllib3") else logging.CRITICAL
        )
    progress = None
    try:
        if args.command == "pin":
            return run_pin(args)
        if args.command == "templates":
            return template_list.main(args)
        settings = load_settings(
            models_dir=args.models_dir,
            manifest=getattr(args, "manifest", None),
            profiles=getattr(args, "profiles", None),
            from_prefix=getattr(args, "from_prefix", None),
            dry_run=args.dry_run,
            verify=args.verify,
            delete=args.delete,
            progress_file=args.progress_file,
            templates_dir=getattr(args, "templates_dir", None),
        )
        progress = Progress(settings.progress_path, settings.progress_interval)
        progress.planning()
        runner = Runner(settings, progress)
        if args.command == "sync":
            if settings.manifest is None:
                raise UsageError("sync needs --manifest FILE")
            manifest = apply_templates(load_manifest(settings.manifest), settings)
            items = select_files(manifest, settings.profiles, settings.from_prefix)
            known = {}
            if settings.from_prefix:
                prefix = parse_uri(settings.from_prefix, prefix=True)
                if prefix.scheme in ("oss", "s3"):
                    # One listing instead of a HEAD per file: what makes a warm start of
                    # thousands of files cost about a second.
                    known = with_listing(items, runner.backend(prefix.scheme).list(prefix), prefix)
        else:
            try:
                prefix = parse_uri(args.source, prefix=True)
            except ManifestError as exc:
                raise UsageError(f"SOURCE_URI: {exc}") from None
            if prefix.scheme not in ("oss", "s3"):
                raise UsageError("mirror copies an oss:// or s3:// prefix")
            listing = runner.backend(prefix.scheme).list(prefix)
            items = select_mirror(prefix, list(listing), FOLDER_KEYS, EXTENSIONS)
            known = {i.dest: listing[i.dest] for i in items}
        remotes = runner.stat_all(items, known)
        steps = runner.steps(items, remotes)
        deletions = runner.deletions(items)
        if settings.dry_run:
            print("\n".join(printable(line) for line in describe(steps, deletions)))
            return 0
        runner.check_space(steps)
        out = runner.execute(steps, deletions)
        print(
            json.dumps(
                {
                    "summary": {
                        "files": len(steps),
                        "fetched": len(out.fetched),
                        "verified": len(out.verified),
                        "skipped": len(out.skipped),
                        "deleted": len(out.deleted),
                        "unplaceable": len(out.unplaceable),
                        "bytes_transferred": progress.transferred,
                        "errors": [str(e) for e in [*out.errors, *out.unplaceable]],
                    }
                }
            ),
            flush=True,
        )
        if out.errors:
            for err in out.errors:
                log.error("%s", err)
            return out.errors[0].exit_code
        if out.unplaceable:
            log.error(
                "partial sync: %d object(s) not placed (each named above with the reason); "
                "every other file is present and verified",
                len(out.unplaceable),
            )
            return out.unplaceable[0].exit_code
        return 0
    except SyncError as exc:
        log.error("%s", exc)
        if progress is not None:
            progress.error(str(exc))
            progress.end(False)
        return exc.exit_code
