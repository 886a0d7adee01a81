"""Local base images built from Ubuntu's archive (or a mirror of it) with mmdebstrap, for
hosts that cannot pull from Docker Hub or nvcr.io: `python -m docker.bases [--cuda]`.

- `comfy-stack-base/ubuntu:24.04`: Ubuntu 24.04 as the official image has it (minbase with
  apt, the noble, -updates and -security pockets, and the user `ubuntu` as 1000:1000).
  Use it with UBUNTU_IMAGE=comfy-stack-base/ubuntu:24.04.
- with --cuda, a stand-in for NVIDIA's devel image, good for compiling the CUDA variant's
  extensions and importing them, not for running on a GPU: `comfy-stack-base/cuda-devel`
  (Ubuntu's CUDA compiler packages from multiverse, with the GCC they support).
  docs/build.md says how it differs. (The CUDA variant's runtime is Ubuntu's own image.)

Needs root, mmdebstrap and docker. On a host without Ubuntu's keyring, the ubuntu-keyring
package is taken from the mirror and its 2018 archive key checked against the fingerprint
below before anything is trusted with it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SUITE = "noble"
DEFAULT_MIRROR = "http://archive.ubuntu.com/ubuntu"
# "Ubuntu Archive Automatic Signing Key (2018) <ftpmaster@ubuntu.com>", which signs noble
ARCHIVE_KEY = "F6ECB3762474EDA9D21B7022871920D1991BC93C"
KEYRING_DEB = "pool/main/u/ubuntu-keyring/ubuntu-keyring_2023.11.28.1_all.deb"
HOST_KEYRING = Path("/usr/share/keyrings/ubuntu-archive-keyring.gpg")
COMPONENTS = "main restricted universe multiverse"  # as in the official image
UBUNTU = "comfy-stack-base/ubuntu:24.04"
CUDA_DEVEL = "comfy-stack-base/cuda-devel:12.8-ubuntu24.04"
# What NVIDIA's devel image sets (its Dockerfile), so the stand-in compiles the same way.
CUDA_ENV = [
    "CUDA_VERSION=12.8.1",
    "NVIDIA_VISIBLE_DEVICES=all",
    "NVIDIA_DRIVER_CAPABILITIES=compute,utility",
    "NVIDIA_REQUIRE_CUDA=cuda>=12.8",
    "LD_LIBRARY_PATH=/usr/local/nvidia/lib:/usr/local/nvidia/lib64",
]
# Ubuntu 24.04's CUDA compiler is 12.0, which supports GCC up to 12. The devel stand-in
# takes it from the release pocket alone, which never changes: in -updates the driver
# libraries the toolkit depends on are transitional packages that follow the newest driver
# branch, so the same build would fetch other packages from one month to the next (and
# from a mirror that lags, files its index already lists but it does not carry yet).
DEVEL_PACKAGES = ["nvidia-cuda-toolkit", "gcc-12", "g++-12"]
ALL_POCKETS = ("", "-updates", "-security")
RELEASE_POCKET = ("",)
DEVEL_ENV = ["NVCC_CCBIN=/usr/bin/g++-12"]


def sources_list(mirror: str, components: str, pockets: tuple[str, ...] = ALL_POCKETS) -> list[str]:
    return [f"deb {mirror} {SUITE}{pocket} {components}" for pocket in pockets]


def keyring(mirror: str, tmp: Path) -> Path:
    if HOST_KEYRING.is_file():
        return HOST_KEYRING
    deb = tmp / "ubuntu-keyring.deb"
    subprocess.run(["curl", "-fsSL", "-o", str(deb), f"{mirror}/{KEYRING_DEB}"], check=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp / "keyring")], check=True)
    ring = tmp / "keyring/usr/share/keyrings/ubuntu-archive-keyring.gpg"
    shown = subprocess.run(
        ["gpg", "--show-keys", "--with-colons", str(ring)], check=True, capture_output=True, text=True
    ).stdout
    if f"fpr:::::::::{ARCHIVE_KEY}:" not in shown:
        raise SystemExit(f"{mirror}/{KEYRING_DEB} does not hold Ubuntu's archive key {ARCHIVE_KEY}")
    return ring


def exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def build(
    tag: str,
    mirror: str,
    ring: Path,
    include: list[str],
    env: list[str],
    components: str,
    tmp: Path,
    force: bool = False,
    pockets: tuple[str, ...] = ALL_POCKETS,
) -> None:
    # A rebuilt base is a new image: every layer built on the old one would be rebuilt too.
    if exists(tag) and not force:
        print(f"{tag} exists (--force rebuilds it)")
        return
    hooks = [
        'chroot "$1" groupadd --gid 1000 ubuntu',
        'chroot "$1" useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash ubuntu',
    ]
    cmd = [
        "mmdebstrap",
        "--variant=minbase",
        f"--include={','.join(['apt', 'ca-certificates', *include])}",
        f"--keyring={ring}",
        f"--components={components.replace(' ', ',')}",
        *(f"--customize-hook={h}" for h in hooks),
        SUITE,
        str(tmp / "root.tar"),
        *sources_list(mirror, components, pockets),
    ]
    importer = [
        "docker",
        "import",
        *(a for e in env for a in ("--change", f"ENV {e}")),
        "--change",
        'CMD ["/bin/bash"]',
        str(tmp / "root.tar"),
        tag,
    ]
    for step in (cmd, importer):
        print("+", " ".join(step), flush=True)
        if subprocess.run(step).returncode != 0:
            raise SystemExit(f"could not build {tag}")
    (tmp / "root.tar").unlink()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m docker.bases", description=__doc__.splitlines()[0])
    p.add_argument(
        "--mirror", default=DEFAULT_MIRROR, help=f"Ubuntu archive mirror (default {DEFAULT_MIRROR})"
    )
    p.add_argument("--cuda", action="store_true", help="also the CUDA devel stand-in")
    p.add_argument(
        "--force", action="store_true", help="rebuild images that exist (and so every layer on them)"
    )
    args = p.parse_args(argv)
    for tool in ("mmdebstrap", "docker"):
        if not shutil.which(tool):
            print(
                f"{tool} is not installed (apt-get install {'mmdebstrap' if tool == 'mmdebstrap' else 'docker.io'})",
                file=sys.stderr,
            )
            return 2
    mirror = args.mirror.rstrip("/")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        tmp.chmod(0o755)  # apt inside mmdebstrap reads the keyring as its own unprivileged user
        ring = keyring(mirror, tmp)
        build(UBUNTU, mirror, ring, [], [], COMPONENTS, tmp, args.force)
        if args.cuda:
            build(
                CUDA_DEVEL,
                mirror,
                ring,
                DEVEL_PACKAGES,
                CUDA_ENV + DEVEL_ENV,
                COMPONENTS,
                tmp,
                args.force,
                RELEASE_POCKET,
            )
    print(f"built {UBUNTU}" + (f", {CUDA_DEVEL}" if args.cuda else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
