"""ComfyUI and the packs of custom_nodes/lock.yaml at their pinned commits, from git or from
a directory of source tarballs: one mechanism for the image build (`python3 -m
comfyctl.sources`) and for `comfyctl serve` without a checkout.

From git, each repository is fetched shallowly at exactly the pinned commit and the commit
is checked after checkout, so a moved branch or a mirror serving something else can never
change what is built. A git mirror (people in mainland China use one) is a URL prefix that
stands for `https://github.com/`; git itself rewrites the URLs (`url.<mirror>.insteadOf`).

From a directory (an air-gapped build), each repository is a tarball named
`<name>-<commit>.tar.gz` holding one top folder of the same name, as GitHub's "download
archive" and `git archive --prefix` make them. A SOURCES.tsv beside them may list files the
archives lack (large data files); they are reported, not invented. A tarball has no history
to check, so its name must carry the locked commit; a repository without one comes from git.

Only the standard library and PyYAML: the image's source stage runs it with Ubuntu's python3.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

log = logging.getLogger(__name__)
GITHUB = "https://github.com/"


class SourceError(Exception):
    """A source that cannot be had at its pinned commit; the message says what to do."""


@dataclass(frozen=True)
class Source:
    name: str
    repo: str
    commit: str
    dest: Path  # relative to the destination folder


def pinned(lock_path: Path) -> list[Source]:
    """ComfyUI first, then every pack under ComfyUI/custom_nodes."""
    lock = yaml.safe_load(lock_path.read_text())
    out = [Source("ComfyUI", lock["comfyui"]["repo"], lock["comfyui"]["commit"], Path("ComfyUI"))]
    out += [
        Source(p["name"], p["repo"], p["commit"], Path("ComfyUI/custom_nodes") / p["name"])
        for p in lock["packs"]
    ]
    return out


def tarball(src: Source, folder: Path | None) -> Path | None:
    if folder is None:
        return None
    path = folder / f"{src.name}-{src.commit}.tar.gz"
    return path if path.is_file() else None


def absent_files(folder: Path | None) -> dict[str, list[str]]:
    """name -> files its archive lacks, from SOURCES.tsv (name, repo, commit, tarball, absent)."""
    index = folder / "SOURCES.tsv" if folder else None
    if not index or not index.is_file():
        return {}
    rows = csv.reader(
        (line for line in index.read_text().splitlines() if line and not line.startswith("#")), delimiter="\t"
    )
    return {r[0]: [f for f in r[4].split(",") if f and f != "-"] for r in rows if len(r) >= 5}


def extract(archive: Path, src: Source, dest: Path) -> None:
    top = archive.name[: -len(".tar.gz")]
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".extract-") as tmp:
        with tarfile.open(archive) as tar:
            # "data" refuses absolute paths, links out of the tree and device files
            tar.extractall(tmp, filter="data")
        roots = os.listdir(tmp)
        if roots != [top]:
            raise SourceError(f"{archive}: expected one top folder {top}/, found {roots[:5]}")
        os.replace(Path(tmp) / top, dest)


def clone(src: Source, dest: Path, mirror: str | None) -> None:
    git = ["git"]
    if mirror:
        git += ["-c", f"url.{mirror}.insteadOf={GITHUB}"]
    git += ["-C", str(dest)]
    dest.mkdir(parents=True)
    try:
        subprocess.run(git + ["init", "-q"], check=True)
        subprocess.run(git + ["remote", "add", "origin", src.repo], check=True)
        subprocess.run(git + ["fetch", "-q", "--depth", "1", "origin", src.commit], check=True)
        subprocess.run(git + ["checkout", "-q", "FETCH_HEAD"], check=True)
        got = subprocess.run(
            git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True
        ).stdout.strip()
    except subprocess.CalledProcessError as exc:
        where = f" through the mirror {mirror}" if mirror else ""
        raise SourceError(
            f"{src.name}: git could not fetch {src.repo}@{src.commit[:12]}{where} "
            f"({exc}); set a git mirror, or a directory holding "
            f"{src.name}-{src.commit}.tar.gz"
        ) from None
    if got != src.commit:
        raise SourceError(f"{src.name}: {src.repo} gave {got}, custom_nodes/lock.yaml pins {src.commit}")
    shutil.rmtree(dest / ".git")


def fetch(lock_path: Path, dest: Path, tarballs: Path | None = None, mirror: str | None = None) -> list[str]:
    """Lay ComfyUI and the packs out under dest; returns one line per source (how it came)."""
    if dest.joinpath("ComfyUI").exists():
        raise SourceError(f"{dest / 'ComfyUI'} already exists: fetch into an empty folder")
    dest.mkdir(parents=True, exist_ok=True)
    missing = absent_files(tarballs)
    report = []
    for src in pinned(lock_path):
        target = dest / src.dest
        target.parent.mkdir(parents=True, exist_ok=True)
        archive = tarball(src, tarballs)
        if archive:
            extract(archive, src, target)
            how = f"from {archive.name}"
            if missing.get(src.name):
                how += f" (the archive lacks {', '.join(missing[src.name])})"
        else:
            clone(src, target, mirror)
            how = f"from git {src.repo}" + (f" through {mirror}" if mirror else "")
        report.append(f"{src.name} @ {src.commit[:12]} {how}")
        log.info("%s", report[-1])
    return report


def apply_patches(patches: Path, comfyui: Path) -> list[str]:
    """Apply docker/patches/<pack>/*.patch to the packs under comfyui/custom_nodes, in name
    order; each patch file says at its top why it exists. A patch that does not apply
    exactly is an error (the pack moved: renew the patch with the pin), never half applied:
    `patch --dry-run` goes first."""
    applied = []
    for patch in sorted(patches.glob("*/*.patch")):
        pack = comfyui / "custom_nodes" / patch.parent.name
        if not pack.is_dir():
            raise SourceError(f"{patch}: no pack {patch.parent.name} under {comfyui / 'custom_nodes'}")
        for dry in (True, False):
            cmd = [
                "patch",
                "-p1",
                "--forward",
                "--batch",
                "--no-backup-if-mismatch",
                "-d",
                str(pack),
                "-i",
                str(patch),
            ]
            try:
                done = subprocess.run(cmd + (["--dry-run"] if dry else []), capture_output=True, text=True)
            except OSError as exc:
                raise SourceError(
                    f"cannot run `patch` ({exc}): install it (Debian/Ubuntu: apt-get install patch)"
                ) from None
            if done.returncode != 0:
                raise SourceError(
                    f"{patch} does not apply to {pack}: {done.stdout.strip()} {done.stderr.strip()}"
                )
        applied.append(f"{patch.parent.name}: {patch.name}")
        log.info("patched %s", applied[-1])
    return applied


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["patch"]:
        # `python -m comfyctl.sources patch PATCHES_DIR COMFYUI_DIR` (the image build)
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        try:
            apply_patches(Path(argv[1]), Path(argv[2]))
        except (SourceError, IndexError) as exc:
            print(
                f"error: {exc or 'usage: python -m comfyctl.sources patch PATCHES_DIR COMFYUI_DIR'}",
                file=sys.stderr,
            )
            return 1
        return 0
    p = argparse.ArgumentParser(prog="python -m comfyctl.sources", description=__doc__.splitlines()[0])
    p.add_argument("--lock", type=Path, required=True, help="custom_nodes/lock.yaml")
    p.add_argument("--dest", type=Path, required=True, help="empty folder; ComfyUI goes to DEST/ComfyUI")
    p.add_argument("--tarballs", type=Path, help="folder of <name>-<commit>.tar.gz source archives")
    p.add_argument("--git-mirror", help=f"URL prefix that stands for {GITHUB}")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    folder = args.tarballs if args.tarballs and args.tarballs.is_dir() else None
    try:
        fetch(args.lock, args.dest, folder, args.git_mirror or None)
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
