"""Dispatch for `comfyctl`: each subcommand lives in its own module.

A subcommand module exposes `add_arguments(parser)` and `main(args) -> int`; it is
imported only when chosen, so `comfyctl run` does not pay for what `serve` imports.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from comfyctl.errors import EXIT_CODES

# name -> (module, one-line help)
COMMANDS = {
    "serve": ("comfyctl.serve", "run ComfyUI and the login proxy from a ComfyUI checkout"),
    "doctor": ("comfyctl.doctor", "report what is misconfigured"),
    "run": ("comfyctl.run", "run a workflow on a server and download its outputs"),
    "sync": ("comfyctl.sync", "sync models now, while ComfyUI serves (no restart)"),
    "drain": ("comfyctl.drain", "wait until ComfyUI's queue is empty (for a preStop hook)"),
    "templates": (
        "comfyctl.templates",
        "list ComfyUI's official templates, usable as template:NAME profiles",
    ),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    codes = "\n".join(f"  {c:>2}  {m.replace('`', '')}" for c, m in sorted(EXIT_CODES.items()))
    parser = argparse.ArgumentParser(
        prog="comfyctl",
        description=__doc__.splitlines()[0],
        epilog=f"exit codes:\n{codes}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # The only option before the command takes no value, so the first word is the command:
    # its module adds its arguments before anything is parsed (`comfyctl serve --help` lists them).
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        if name == chosen:
            importlib.import_module(module_name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    module = importlib.import_module(args._module)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(module.main(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
