"""`python -m model_sync templates` and `comfyctl templates`: the official templates that
work as `template:NAME` profiles, each with its files and download size where known.

Sizes come from the manifest (`--manifest`, where it has pinned a file), from the sources
themselves with `--stat` (one HEAD per file), or else from the template index, which
publishes a total per template (marked `*`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile

from comfy_stack import variables as v
from comfy_stack.env import flag_help

from .errors import SyncError
from .manifest import load_manifest, parse_manifest
from .planner import Item
from .progress import Progress
from .run import Runner
from .settings import load_settings
from .templates import Library, Template, find_templates_dir, unsourced_problem

EMPTY_MANIFEST = {"version": 1, "profiles": {}, "files": []}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", metavar="NAME", help="show these templates file by file")
    p.add_argument("--all", action="store_true", help="also list templates that name no model file")
    p.add_argument("--stat", action="store_true", help="ask each file's source for its size (network)")
    p.add_argument("--manifest", help="a manifest whose entries (sources, pinned sizes) take precedence")
    p.add_argument("--templates-dir", help=flag_help(v.MODEL_SYNC_TEMPLATES_DIR))
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")


def gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def summary(t: Template, sizes: dict[str, int], curated: dict) -> dict:
    """One template as printed: a file the manifest has shows the manifest's source, as the
    sync uses it."""
    known = [sizes[m.dest] for m in t.models if m.dest in sizes]
    return {
        "name": t.name,
        "profile": t.profile,
        "title": t.title,
        "size_bytes": sum(known) if t.models and len(known) == len(t.models) else None,
        "index_size_gb": t.size_gb,
        "models": [
            {
                "folder": m.folder,
                "path": m.path,
                "url": m.url,
                "size": sizes.get(m.dest),
                "source": str(curated[m.dest].source)
                if m.dest in curated
                else str(m.source)
                if m.source
                else None,
            }
            for m in t.models
        ],
        "problems": list(t.problems) + [unsourced_problem(m) for m in t.unsourced if m.dest not in curated],
    }


def size_text(row: dict) -> str:
    if row["size_bytes"] is not None:
        return gb(row["size_bytes"])
    return f"{row['index_size_gb']:.1f} GB*" if row["index_size_gb"] else "?"


def print_table(rows: list[dict], total: int) -> None:
    width = max([len(r["name"]) for r in rows] + [8])
    print(f"{'TEMPLATE':<{width}}  MODELS  {'SIZE':>9}  TITLE")
    for r in rows:
        note = f"  ({len(r['problems'])} problem(s): see `templates {r['name']}`)" if r["problems"] else ""
        print(f"{r['name']:<{width}}  {len(r['models']):>6}  {size_text(r):>9}  {r['title']}{note}")
    print(
        f"{len(rows)} of {total} templates listed; * = the template index's published size. "
        "Sync one with --profile template:NAME (MODEL_PROFILES=template:NAME)."
    )


def print_details(row: dict) -> None:
    print(f"{row['profile']}  {row['title']}")
    for m in row["models"]:
        size = gb(m["size"]) if m["size"] is not None else "size unknown"
        print(f"  {m['folder']}/{m['path']}  <- {m['source'] or m['url'] + ' (no hub source)'}  ({size})")
    print(f"  total: {size_text(row)}")
    for problem in row["problems"]:
        print(f"  problem: {problem}")


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as scratch:  # --stat reads sources only
        settings = load_settings(models_dir=scratch, manifest=args.manifest, templates_dir=args.templates_dir)
        library = Library(find_templates_dir(settings.templates_dir, settings.comfyui_python))
        manifest = load_manifest(settings.manifest) if settings.manifest else parse_manifest(EMPTY_MANIFEST)
        index = library.index()
        templates = [library.load(n, manifest.folders, manifest.extensions) for n in args.names or index]
        if not args.names and not args.all:
            templates = [t for t in templates if t.models]
        curated = {f.dest: f for f in manifest.files}
        sizes = {d: f.size for d, f in curated.items() if f.size is not None}
        if args.stat:
            items = {}
            for t in templates:
                for m in t.models:
                    source = curated[m.dest].source if m.dest in curated else m.source
                    if m.dest not in sizes and source is not None:
                        items[m.dest] = Item(m.dest, source)
            runner = Runner(settings, Progress(None, settings.progress_interval))
            sizes |= {d: r.size for d, r in runner.stat_all(list(items.values())).items()}
    rows = [summary(t, sizes, curated) for t in templates]
    if args.json:
        print(json.dumps({"templates_dir": str(library.dir), "templates": rows}, indent=1))
    elif args.names:
        for row in rows:
            print_details(row)
    else:
        print_table(rows, len(index))
    return 0


def main(args: argparse.Namespace) -> int:
    try:
        return run(args)
    except SyncError as exc:
        print(f"templates: {exc}", file=sys.stderr)
        return exc.exit_code
