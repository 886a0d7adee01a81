"""Build-time check: ComfyUI starts with every pinned pack and each pack's nodes register.

Starts ComfyUI on CPU on a loopback port, fails on any "IMPORT FAILED" line in its log,
then asks /object_info for every class the lock lists and every class in the captured
schemas (workflows/schemas/*.json, what the bundled workflows were validated against). A
pack that silently failed to import, or dropped some of its nodes (packs catch their own
import errors and log a warning), fails the image build instead of a user's first workflow.
Usage: python -m docker.check_nodes LOCK COMFYUI_DIR [SCHEMAS_DIR]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

PORT = int(os.environ.get("CHECK_NODES_PORT", "8199"))  # loopback, inside the build container


def captured_classes(schemas_dir: Path) -> dict[str, str]:
    """Class -> the schema file naming it."""
    return {cls: f.stem for f in sorted(schemas_dir.glob("*.json")) for cls in json.loads(f.read_text())}


def main(lock_path: str, comfy: str, schemas_dir: str | None = None) -> int:
    lock = yaml.safe_load(Path(lock_path).read_text())
    schemas = (
        Path(schemas_dir) if schemas_dir else Path(__file__).resolve().parent.parent / "workflows" / "schemas"
    )
    expected = captured_classes(schemas) if schemas.is_dir() else {}
    scratch = Path(tempfile.mkdtemp(prefix="comfyui-check-"))
    dirs = {d: scratch / d for d in ("user", "input", "output", "temp")}
    for d in dirs.values():
        d.mkdir()
    log = (scratch / "comfyui.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "main.py",
            "--cpu",
            "--listen",
            "127.0.0.1",
            "--port",
            str(PORT),
            "--disable-auto-launch",
            *(a for d, path in dirs.items() for a in (f"--{d}-directory", str(path))),
            "--database-url",
            f"sqlite:///{scratch / 'comfyui.db'}",
        ],
        cwd=comfy,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 600
        info = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/object_info", timeout=10) as r:
                    info = json.load(r)
                    break
            except OSError:
                time.sleep(1)
        text = (scratch / "comfyui.log").read_text(errors="replace")
        if info is None:
            print(text[-5000:])
            raise SystemExit("ComfyUI did not start")
        failed = [l for l in text.splitlines() if "IMPORT FAILED" in l]
        missing = [(p["name"], n) for p in lock["packs"] for n in p.get("nodes", []) if n not in info]
        missing += [(source, n) for n, source in expected.items() if n not in info]
        for line in failed:
            print(line)
        for pack, node in missing:
            print(f"{pack}: node {node} is not registered")
        if missing and expected:
            print(f"(a pin moved without recapturing? `make schemas` against this image rewrites {schemas})")
        if failed or missing:
            print(text[-5000:])
            return 1
        print(
            f"ComfyUI started; {len(info)} node classes; every pinned pack registered its nodes, "
            f"and all {len(expected)} captured classes are present"
        )
        return 0
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
