"""Dispatch for `comfyctl`: each subcommand lives in its own module.

A subcommand module exposes `add_arguments(parser)` and `main(args) -> int`; it is
imported only when chosen, so `comfyctl run` does not pay for what `serve` imports.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> (module, one-line help)
COMMANDS = {
    "serve": ("comfyctl.serve", "run ComfyUI and the login proxy from a ComfyUI checkout"),
    "doctor": ("comfyctl.doctor", "report what is misconfigured"),
    "run": ("comfyctl.run", "run a workflow on a server and download its outputs"),
    "drain": ("comfyctl.drain", "wait until ComfyUI's queue is empty (for a preStop hook)"),
    "templates": ("comfyctl.templates", "list ComfyUI's official templates, usable as template:NAME profiles"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="comfyctl", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Parse the command name first, then let its module add its own arguments.
    pre, _ = parser.parse_known_args(argv)
    module = importlib.import_module(pre._module)
    sub_parser = parser._subparsers._group_actions[0].choices[pre.command]  # noqa: SLF001
    module.add_arguments(sub_parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(module.main(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
