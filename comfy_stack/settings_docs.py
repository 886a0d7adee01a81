"""Keep the variable tables in docs/ generated from `comfy_stack.variables`.

    python -m comfy_stack.settings_docs           # rewrite the tables (make settings-docs)
    python -m comfy_stack.settings_docs --check   # exit 1 naming each stale table

Each table stands between `<!-- variables:NAME -->` and `<!-- /variables:NAME -->`; the
prose around it is the docs' own.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from comfy_stack.env import markdown_table
from comfy_stack.files import SHARED, write_atomic
from comfy_stack.variables import DOC_TABLES, REPO


def _block(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- variables:{name} -->\n).*?(\n<!-- /variables:{name} -->)", re.S)


def render(text: str, name: str) -> str:
    """`text` with table NAME regenerated; ValueError when its markers are missing."""
    _doc, rows = DOC_TABLES[name]
    pattern = _block(name)
    if not pattern.search(text):
        raise ValueError(f"no <!-- variables:{name} --> ... <!-- /variables:{name} --> block")
    table = markdown_table(rows)
    return pattern.sub(lambda m: m.group(1) + table + m.group(2), text, count=1)


def rendered(root: Path = REPO) -> dict[Path, tuple[str, str]]:
    """doc file -> (its text now, its text with every table regenerated)."""
    out: dict[Path, tuple[str, str]] = {}
    for name, (doc, _rows) in DOC_TABLES.items():
        path = root / doc
        old = out[path][0] if path in out else path.read_text(encoding="utf-8")
        new = render(out[path][1] if path in out else old, name)
        out[path] = (old, new)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m comfy_stack.settings_docs", description=__doc__.splitlines()[0]
    )
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table is stale")
    args = p.parse_args(argv)
    stale = [(path, new) for path, (old, new) in rendered().items() if old != new]
    for path, new in stale:
        if args.check:
            print(
                f"{path.relative_to(REPO)}: variable table out of date; run make settings-docs",
                file=sys.stderr,
            )
        else:
            write_atomic(path, new, mode=SHARED)
            print(f"rewrote {path.relative_to(REPO)}")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
