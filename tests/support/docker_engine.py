"""A real Docker engine for the image tier: found running, or started for the tier (and
stopped after it), and the build inputs chosen for what this machine can reach."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from . import REPO, wait_until

# The image's CPU base as the Dockerfile pins it, and the stand-in `python -m docker.bases` makes.
STANDIN_UBUNTU = "comfy-stack-base/ubuntu:24.04"
STANDIN_CUDA_DEVEL = "comfy-stack-base/cuda-devel:12.8-ubuntu24.04"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclass
class Engine:
    docker: str
    started: subprocess.Popen | None = None
    workdir: Path | None = None
    notes: list[str] = field(default_factory=list)

    def run(self, *args: str, timeout: float = 600, check: bool = True, **kw) -> subprocess.CompletedProcess:
        out = subprocess.run([self.docker, *args], capture_output=True, text=True, timeout=timeout, **kw)
        if check and out.returncode != 0:
            raise AssertionError(f"docker {' '.join(args[:3])} exited {out.returncode}: {out.stderr[-3000:]}")
        return out

    def has_image(self, ref: str) -> bool:
        return self.run("image", "inspect", ref, check=False).returncode == 0

    def stop(self) -> None:
        if self.started:
            self.started.terminate()
            try:
                self.started.wait(60)
            except subprocess.TimeoutExpired:
                self.started.kill()
                self.started.wait()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def engine_answers(docker: str) -> bool:
    try:
        return subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def start_engine() -> tuple[Engine | None, str]:
    """The running engine, or one started here; (None, why not) when Docker cannot run."""
    docker = shutil.which("docker")
    if not docker:
        return None, "no docker client on PATH (apt-get install docker.io)"
    if engine_answers(docker):
        return Engine(docker), ""
    dockerd = shutil.which("dockerd") or shutil.which("dockerd", path="/usr/sbin:/usr/bin")
    if not dockerd or os.geteuid() != 0:
        return None, "no Docker engine answers and this user cannot start dockerd (needs root and dockerd)"
    workdir = Path(tempfile.mkdtemp(prefix="dockerd-"))
    log = open(workdir / "dockerd.log", "wb")
    # Without iptables: publishing on 127.0.0.1 still works (docker-proxy) and nothing of
    # the host's firewall is changed; builds that need the network use --network host.
    proc = subprocess.Popen(
        [dockerd, "--iptables=false", "--ip-masq=false"], stdout=log, stderr=subprocess.STDOUT
    )
    engine = Engine(docker, proc, workdir)
    try:
        wait_until(
            lambda: proc.poll() is None and engine_answers(docker),
            timeout=90,
            interval=1,
            what="dockerd to answer",
        )
    except TimeoutError:
        engine.stop()
        return None, f"dockerd did not start: {(workdir / 'dockerd.log').read_text()[-1500:]}"
    return engine, ""


def reachable(url: str, timeout: float = 10) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return True
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (OSError, ValueError):
        return False


def build_inputs(engine: Engine) -> dict[str, str]:
    """The environment for `python -m docker.build` on this machine: real sources where they
    can be reached, else the stand-ins (each choice noted for the tier's summary)."""
    env: dict[str, str] = {"DOCKER_BUILD_FLAGS": "--network host"}
    ubuntu = re_arg("UBUNTU_IMAGE")
    pulled = engine.has_image(ubuntu) or engine.run("pull", ubuntu, check=False, timeout=300).returncode == 0
    if not pulled:
        if not engine.has_image(STANDIN_UBUNTU):
            subprocess.run([sys.executable, "-m", "docker.bases"], cwd=REPO, check=True, timeout=900)
        env["UBUNTU_IMAGE"] = STANDIN_UBUNTU
        engine.notes.append(
            f"{ubuntu.split('@')[0]} cannot be pulled: built on {STANDIN_UBUNTU} (python -m docker.bases)"
        )
    sources = REPO.parent / "shared" / "sources"
    if sources.is_dir():
        env["SOURCES_DIR"] = str(sources)
        engine.notes.append(f"ComfyUI and the packs from the tarballs in {sources}")
    if HOST_CA.is_file():
        # the build trusts what this host trusts (a company proxy's CA among it)
        env["EXTRA_CA_CERTS"] = str(HOST_CA)
    if not reachable("https://download.pytorch.org/whl/cpu/"):
        env["TORCH_INDEX_URL"] = "https://pypi.org/simple"
        engine.notes.append(
            "the PyTorch index cannot be reached: torch from PyPI (its CUDA 12.8 build, "
            "which runs on the CPU)"
        )
    return env


def re_arg(name: str) -> str:
    import re

    return re.search(rf"^ARG {name}=(\S+)", (REPO / "docker/Dockerfile").read_text(), re.M).group(1)


def build(
    engine: Engine,
    env: dict[str, str],
    variant: str,
    tag: str,
    log: Path,
    extra: tuple[str, ...] = (),
    docker: str | None = None,
) -> float:
    """`python -m docker.build` as make runs it; returns the seconds it took."""
    before = _image_id(engine, tag)
    started = time.monotonic()
    with log.open("w") as out:
        done = subprocess.run(
            [sys.executable, "-m", "docker.build", "--variant", variant, "--tag", tag, *extra],
            cwd=REPO,
            env=os.environ | env | ({"DOCKER": docker} if docker else {}),
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=5400,
        )
    took = time.monotonic() - started
    if done.returncode != 0:
        raise AssertionError(f"the {variant} build failed after {took:.0f} s:\n{log.read_text()[-6000:]}")
    if before and before != _image_id(engine, tag):
        # The image the tag named before is left untagged (11 GB, a few of them shared);
        # each run of the tier would otherwise leave one more on the disk.
        engine.run("rmi", before, check=False)
    return took


def _image_id(engine: Engine, tag: str) -> str | None:
    out = engine.run("image", "inspect", "--format", "{{.Id}}", tag, check=False)
    return out.stdout.strip() if out.returncode == 0 else None


def image_size(engine: Engine, tag: str) -> int:
    return json.loads(engine.run("image", "inspect", tag).stdout)[0]["Size"]
