"""The CUDA variant's extensions: the Hunyuan3D rasterizer wheel and the mesh renderer module
compiled in the `extensions-cuda` stage against the pinned torch (its CUDA 12.8 build) for
TORCH_CUDA_ARCH_LIST (default here: 8.6 alone, as CI builds; a release builds the
Dockerfile's whole list), then imported in a container (import only: no GPU is needed to
import). Where NVIDIA's devel image cannot be pulled, on the stand-in `python -m docker.bases
--cuda` makes (Ubuntu's CUDA 12.0 compiler: docs/build.md), which cannot compile for 10.0
or 12.0."""

from __future__ import annotations

import os
import re
import sys

import pytest

from tests.image.conftest import timings
from tests.support import REPO, docker_engine

pytestmark = [
    pytest.mark.timeout(5400),
    # about 30 minutes on 2 cores from cold (a devel base, torch, three GPU targets):
    # its own target, so that `make test-image` fits CI's time on a new machine
    pytest.mark.skipif(
        os.environ.get("COMFY_STACK_IMAGE_CUDA") != "1",
        reason="the CUDA extensions build with `make test-image-cuda`",
    ),
]
TAG = "comfy-stack:tier-extensions"
# One architecture, the oldest of the list: its kernels also run on 8.9 (same major, later
# minor), and one target compiles in a fraction of the time of five.
ARCHS = os.environ.get("TORCH_CUDA_ARCH_LIST") or "8.6"


def sm_names(arch_list: str) -> set[str]:
    """ "8.6;9.0" -> {"sm_86", "sm_90"}, as cuobjdump names the compiled code."""
    return {"sm_" + a.strip().replace(".", "") for a in arch_list.replace(" ", ";").split(";") if a.strip()}


@pytest.fixture(scope="module")
def extensions(engine, inputs, tmp_path_factory):
    env = dict(inputs)
    devel = docker_engine.re_arg("CUDA_DEVEL")
    if not (engine.has_image(devel) or engine.run("pull", devel, check=False, timeout=900).returncode == 0):
        if not engine.has_image(docker_engine.STANDIN_CUDA_DEVEL):
            import subprocess

            subprocess.run(
                [sys.executable, "-m", "docker.bases", "--cuda"], cwd=REPO, check=True, timeout=1800
            )
        env["CUDA_DEVEL"] = docker_engine.STANDIN_CUDA_DEVEL
        timings["cuda devel base"] = (
            f"{devel.split('@')[0]} cannot be pulled: {docker_engine.STANDIN_CUDA_DEVEL}"
        )
        too_new = sorted(a for a in sm_names(ARCHS) if int(a[3:]) >= 100)
        if too_new:
            pytest.fail(
                f"TORCH_CUDA_ARCH_LIST={ARCHS} names {', '.join(too_new)}, which the stand-in's "
                "CUDA 12.0 compiler cannot build: use NVIDIA's CUDA 12.8 devel image, or a list up to 9.0"
            )
    env["TORCH_CUDA_ARCH_LIST"] = ARCHS
    timings["cuda architectures"] = ARCHS
    # only this stage (the legacy builder also runs the stages before it: both runtime bases
    # are Ubuntu's, which the CPU tier has already)
    log = tmp_path_factory.mktemp("ext") / "build-extensions.log"
    took = docker_engine.build(engine, env, "cuda", TAG, log, ("--target", "extensions-cuda"))
    timings["cuda extensions stage seconds"] = round(took)
    return TAG


def test_the_rasterizer_and_renderer_import_against_the_pinned_torch(engine, extensions):
    script = (
        "set -e; . /opt/build-venv/bin/activate; pip install --no-deps -q /wheels/*.whl; cd /renderer; "
        "python -c 'import torch, custom_rasterizer, custom_rasterizer_kernel, mesh_inpaint_processor; "
        "print(torch.__version__, torch.version.cuda)'"
    )
    out = engine.run("run", "--rm", "--network", "none", extensions, "sh", "-c", script, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    version, cuda = out.stdout.split()[-2:]
    assert version.startswith("2.8.0") and cuda == "12.8"


def test_the_rasterizer_carries_code_for_exactly_the_architectures_it_was_built_for(engine, extensions):
    find = (
        "so=$(find /opt/build-venv /wheels /build -name 'custom_rasterizer_kernel*.so' | head -1); "
        "cuobjdump=$(command -v cuobjdump || echo /usr/local/cuda/bin/cuobjdump); "
        "if [ -z \"$so\" ]; then cd /tmp && python3 -m zipfile -e /wheels/*.whl w && so=$(find w -name '*.so' | head -1); fi; "
        "$cuobjdump --list-elf \"$so\""
    )
    out = engine.run("run", "--rm", "--network", "none", extensions, "sh", "-c", find, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert set(re.findall(r"\bsm_\d+", out.stdout)) == sm_names(ARCHS), out.stdout
    recorded = engine.run(
        "run", "--rm", "--network", "none", extensions, "cat", "/renderer/cuda-arch-list.txt"
    )
    assert sm_names(recorded.stdout) == sm_names(ARCHS)
