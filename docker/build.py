"""Build the image: `python -m docker.build` (what `make build` and `make build-cpu` run).

Stages the optional build inputs in the build context (a folder of source tarballs as
build/sources/, a company CA as build/extra-ca.crt), passes every outside source that was
pointed elsewhere as a build argument, and runs `docker build`. Each option also reads the
environment variable named in its help (make passes them through); docs/build.md explains
them. Prints the time the build took and the image's size.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STAGED_SOURCES = REPO / "build" / "sources"
STAGED_CA = REPO / "build" / "extra-ca.crt"
COMFYUI_LABEL = "io.comfy-stack.comfyui.commit"
# option -> (environment variable, build argument it becomes; None: handled here)
SOURCES = {
    "ubuntu_image": ("UBUNTU_IMAGE", "UBUNTU_IMAGE"),
    "cuda_devel": ("CUDA_DEVEL", "CUDA_DEVEL"),
    "apt_mirror": ("APT_MIRROR", "APT_MIRROR"),
    "pip_index_url": ("PIP_INDEX_URL", "PIP_INDEX_URL"),
    "torch_index_url": ("TORCH_INDEX_URL", "TORCH_INDEX_URL"),
    "git_mirror": ("GIT_MIRROR", "GIT_MIRROR"),
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m docker.build", description=__doc__.splitlines()[0])
    env = os.environ.get
    p.add_argument("--variant", choices=("cuda", "cpu"), default=env("VARIANT") or "cuda", help="env VARIANT")
    p.add_argument("--tag", default=env("IMAGE_TAG"), help="env IMAGE_TAG (default comfy-stack:VARIANT)")
    p.add_argument(
        "--sources-dir",
        type=Path,
        default=env("SOURCES_DIR") or None,
        help="env SOURCES_DIR: folder of <name>-<commit>.tar.gz sources (an air-gapped build)",
    )
    p.add_argument(
        "--extra-ca",
        type=Path,
        default=env("EXTRA_CA_CERTS") or None,
        help="env EXTRA_CA_CERTS: PEM file of CA certificates the build and the image trust",
    )
    for opt, (var, _arg) in SOURCES.items():
        p.add_argument("--" + opt.replace("_", "-"), default=env(var) or None, help=f"env {var}")
    p.add_argument(
        "--cuda-arch-list",
        default=env("TORCH_CUDA_ARCH_LIST") or None,
        help="env TORCH_CUDA_ARCH_LIST: compute capabilities the CUDA extensions are compiled for, "
        "e.g. '8.6' (default: the Dockerfile's, every GPU docs/build.md lists)",
    )
    p.add_argument("--target", help="build only up to this stage (e.g. extensions-cuda)")
    p.add_argument("--docker", default=env("DOCKER") or "docker", help="env DOCKER: the docker client")
    p.add_argument(
        "--flags",
        default=env("DOCKER_BUILD_FLAGS") or "",
        help="env DOCKER_BUILD_FLAGS: more `docker build` flags, e.g. '--network host --pull'",
    )
    return p


def stage(sources_dir: Path | None, extra_ca: Path | None) -> None:
    """Put the optional inputs where the Dockerfile's optional COPY lines find them, and
    remove what an earlier build staged, so a build never uses stale inputs."""
    shutil.rmtree(STAGED_SOURCES, ignore_errors=True)
    STAGED_CA.unlink(missing_ok=True)
    if sources_dir:
        if not sources_dir.is_dir():
            raise SystemExit(f"SOURCES_DIR={sources_dir} is not a folder")
        STAGED_SOURCES.mkdir(parents=True)
        for f in sorted(sources_dir.iterdir()):
            if f.name.endswith(".tar.gz") or f.name == "SOURCES.tsv":
                shutil.copy2(f, STAGED_SOURCES / f.name)
    if extra_ca:
        if "BEGIN CERTIFICATE" not in extra_ca.read_text(errors="replace"):
            raise SystemExit(f"EXTRA_CA_CERTS={extra_ca} holds no PEM certificate")
        STAGED_CA.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(extra_ca, STAGED_CA)


def comfyui_commit() -> str:
    import re

    text = (REPO / "custom_nodes/lock.yaml").read_text()
    return re.search(r"^comfyui:\n(?:  .*\n)*?  commit: ([0-9a-f]{40})", text, re.M).group(1)


def revision() -> str:
    out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def command(args: argparse.Namespace) -> list[str]:
    build_args = {"VARIANT": args.variant, "REVISION": revision()}
    for opt, (_var, arg) in SOURCES.items():
        if getattr(args, opt):
            build_args[arg] = getattr(args, opt)
    if args.cuda_arch_list:
        build_args["TORCH_CUDA_ARCH_LIST"] = args.cuda_arch_list
    if args.variant == "cpu":
        # The legacy builder runs every stage: the CUDA devel one becomes the CPU base (see
        # the Dockerfile's head), so a CPU build pulls nothing of CUDA with either builder.
        build_args |= {"CUDA_DEVEL": "base-cpu"}
    cmd = [
        args.docker,
        "build",
        "-f",
        str(REPO / "docker/Dockerfile"),
        "-t",
        args.tag or f"comfy-stack:{args.variant}",
        # which ComfyUI the image carries, readable with `docker image inspect`
        "--label",
        f"{COMFYUI_LABEL}={comfyui_commit()}",
    ]
    for k, v in build_args.items():
        cmd += ["--build-arg", f"{k}={v}"]
    if args.target:
        cmd += ["--target", args.target]
    return cmd + shlex.split(args.flags) + [str(REPO)]


def image_size(docker: str, tag: str) -> int | None:
    out = subprocess.run([docker, "image", "inspect", tag], capture_output=True, text=True)
    return json.loads(out.stdout)[0]["Size"] if out.returncode == 0 else None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.tag = args.tag or f"comfy-stack:{args.variant}"
    stage(args.sources_dir, args.extra_ca)
    cmd = command(args)
    print("+", shlex.join(cmd), flush=True)
    started = time.monotonic()
    code = subprocess.run(cmd).returncode
    took = time.monotonic() - started
    if code != 0:
        print(f"docker build failed (exit {code}) after {took:.0f} s", file=sys.stderr)
        return code
    size = image_size(args.docker, args.tag)
    print(f"built {args.tag} in {took:.0f} s" + (f", {size / 1e9:.1f} GB" if size else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
