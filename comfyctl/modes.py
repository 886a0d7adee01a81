"""Choosing ComfyUI's memory and attention flags from COMFYUI_MODE, COMFYUI_ATTENTION and the hardware."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from comfyctl.errors import ConfigError

log = logging.getLogger(__name__)

# Below this much VRAM, `auto` picks --lowvram: the bundled video workflows need about
# 16 GB with weights kept resident; smaller cards must offload.
LOWVRAM_BELOW_MIB = 12 * 1024
FIXED = {"gpu": [], "lowvram": ["--lowvram"], "novram": ["--novram"], "cpu": ["--cpu"]}


# The driver a CUDA runtime needs (NVIDIA's CUDA release notes): the CUDA image sets
# CUDA_VERSION to its torch's. Any driver of the same major version runs it through CUDA's
# minor-version compatibility (R525+ for CUDA 12, which PyTorch's release checks test),
# except kernels shipped only as PTX that the driver would have to compile; below that,
# torch finds no usable GPU ("driver too old"). The image carries no forward-compatibility
# libraries (docs/build.md, "The runtime base").
MIN_DRIVER_FOR_MAJOR = {12: 525, 13: 580}
MIN_DRIVER_FOR_CUDA = {(12, 8): 570, (12, 9): 575, (13, 0): 580}
DRIVER_HOW = (
    "(ACK: node pool label ack.aliyun.com/nvidia-driver-version; ACS: pod label "
    "alibabacloud.com/gpu-driver-version; see docs/deploy-ack.md)"
)


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_mib: int
    driver: str = ""


@dataclass(frozen=True)
class Choice:
    flags: list[str]
    why: str


def detect_gpus(nvidia_smi: str | None = None) -> list[Gpu]:
    exe = nvidia_smi or shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if out.returncode != 0:
        return []
    gpus = []
    for line in out.stdout.strip().splitlines():
        fields = [f.strip() for f in line.split(",")]
        # name, memory, driver; a card name may itself hold a comma
        if len(fields) >= 3 and re.fullmatch(r"\d+(\.\d+)*", fields[-1]):
            name, mem, driver = ", ".join(fields[:-2]), fields[-2], fields[-1]
        else:
            name, mem, driver = ", ".join(fields[:-1]), fields[-1], ""
        try:
            gpus.append(Gpu(name, int(float(mem)), driver))
        except ValueError:
            continue
    return gpus


def driver_warning(gpus: list[Gpu], cuda_version: str | None) -> str | None:
    """Why the GPU's driver may be too old for the image's CUDA runtime, with what to do."""
    if not gpus or not gpus[0].driver or not cuda_version:
        return None
    try:
        cuda_major, cuda_minor = (int(x) for x in (cuda_version.split(".") + ["0"])[:2])
        major = int(gpus[0].driver.split(".")[0])
    except ValueError:
        return None
    need = MIN_DRIVER_FOR_CUDA.get((cuda_major, cuda_minor))
    if need is None or major >= need:
        return None
    driver = gpus[0].driver
    floor = MIN_DRIVER_FOR_MAJOR.get(cuda_major, need)
    if major < floor:
        return (
            f"driver {driver} is older than CUDA {cuda_version} needs (R{need}+; at the very least "
            f"R{floor}+ for CUDA {cuda_major}): torch will not use the GPU. Use a driver >= {need} {DRIVER_HOW}"
        )
    return (
        f"driver {driver} is older than CUDA {cuda_version} needs (R{need}+): it runs through CUDA's "
        f"minor-version compatibility, which covers every kernel compiled for this GPU but not a kernel "
        f"shipped only as PTX, and GPUs newer than the driver are not seen at all. Use a driver >= "
        f"{need} {DRIVER_HOW}"
    )


def choose_memory_flags(mode: str, gpus: list[Gpu]) -> Choice:
    if mode != "auto":
        return Choice(list(FIXED[mode]), f"COMFYUI_MODE={mode}")
    if not gpus:
        return Choice(["--cpu"], "no NVIDIA GPU found (nvidia-smi absent or failing): running on the CPU")
    gpu = gpus[0]
    if gpu.memory_mib < LOWVRAM_BELOW_MIB:
        return Choice(
            ["--lowvram"],
            f"{gpu.name} has {gpu.memory_mib} MiB, under {LOWVRAM_BELOW_MIB} MiB: "
            "offloading model parts to system memory",
        )
    return Choice([], f"{gpu.name} has {gpu.memory_mib} MiB: ComfyUI's normal memory management")


def installed(python: Path, modules: tuple[str, ...]) -> set[str]:
    """Which of `modules` ComfyUI's interpreter has, asked once and without importing them:
    importing sageattention or xformers imports torch (and triton), seconds at every start."""
    code = "import importlib.util as u, sys; print(*[m for m in sys.argv[1:] if u.find_spec(m)])"
    try:
        out = subprocess.run([str(python), "-c", code, *modules], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return set(out.stdout.split()) if out.returncode == 0 else set()


# COMFYUI_ATTENTION's choices and the ComfyUI flag each passes. `auto` and `xformers` pass
# none: ComfyUI uses xformers by itself whenever it imports, else PyTorch's SDPA
# (comfy/model_management.py, comfy/ldm/modules/attention.py at the pinned commit).
# `sdpa`'s flag also turns xformers off; `sage` needs ComfyUI's own flag.
ATTENTION_FLAGS = {
    "auto": [],
    "sdpa": ["--use-pytorch-cross-attention"],
    "xformers": [],
    "sage": ["--use-sage-attention"],
}
# the package an explicit choice needs in ComfyUI's interpreter
ATTENTION_PACKAGE = {"xformers": "xformers", "sage": "sageattention"}
# ComfyUI's mutually exclusive attention flags (its cli_args.py): one given in
# COMFYUI_EXTRA_ARGS beside an explicit COMFYUI_ATTENTION makes ComfyUI exit at parse time.
COMFYUI_ATTENTION_FLAGS = (
    "--use-split-cross-attention",
    "--use-quad-cross-attention",
    "--use-pytorch-cross-attention",
    "--use-sage-attention",
    "--use-flash-attention",
)


def choose_attention_flags(setting: str, python: Path, on_cpu: bool, extra: tuple[str, ...] = ()) -> Choice:
    """ComfyUI's attention flags for COMFYUI_ATTENTION. The default, `auto`, passes none, so
    ComfyUI chooses as it does by itself (xformers where it imports, else PyTorch SDPA): no
    other default is taken until a GPU measurement (`make bench-gpu`) says one is faster. An
    explicit choice whose package is missing raises ConfigError: quietly running another
    backend would make a measurement or a tuned deployment lie about what it runs."""
    if on_cpu:
        ignored = f"; COMFYUI_ATTENTION={setting} is ignored" if setting != "auto" else ""
        return Choice([], f"CPU: ComfyUI's own attention{ignored}")
    given = [f for f in extra if f in COMFYUI_ATTENTION_FLAGS]
    if setting == "auto" and given:
        return Choice([], f"COMFYUI_EXTRA_ARGS sets {' '.join(given)}")
    have = installed(python, ("xformers", "sageattention"))
    package = ATTENTION_PACKAGE.get(setting)
    if package and package not in have:
        raise ConfigError(
            f"COMFYUI_ATTENTION={setting} but {package} is not installed in ComfyUI's interpreter "
            f"({python}): set COMFYUI_ATTENTION=auto (ComfyUI's own choice) or sdpa, or install "
            f"{package} (the CUDA image has xformers and sageattention)"
        )
    if setting == "auto":
        chosen = "xformers (installed)" if "xformers" in have else "PyTorch SDPA (xformers is not installed)"
        spare = (
            "; sageattention is installed too: COMFYUI_ATTENTION=sage uses it"
            if "sageattention" in have
            else ""
        )
        return Choice([], f"COMFYUI_ATTENTION=auto: ComfyUI's own choice, {chosen}{spare}")
    names = {"sdpa": "PyTorch SDPA", "xformers": "xformers", "sage": "SageAttention"}
    return Choice(list(ATTENTION_FLAGS[setting]), f"COMFYUI_ATTENTION={setting}: {names[setting]}")


def runs_on_cpu(memory: Choice, extra: tuple[str, ...]) -> bool:
    return "--cpu" in memory.flags or "--cpu" in extra


def comfyui_flags(
    mode: str,
    python: Path,
    extra: tuple[str, ...],
    attention: str = "auto",
    nvidia_smi: str | None = None,
    cuda_version: str | None = None,
) -> list[str]:
    gpus = detect_gpus(nvidia_smi) if mode != "cpu" else []
    warning = driver_warning(gpus, cuda_version)
    if warning:
        log.warning("%s", warning)
    memory = choose_memory_flags(mode, gpus)
    log.info("ComfyUI memory mode: %s (%s)", " ".join(memory.flags) or "default", memory.why)
    chosen = choose_attention_flags(attention, python, runs_on_cpu(memory, extra), extra)
    log.info("ComfyUI attention: %s (%s)", " ".join(chosen.flags) or "no flag", chosen.why)
    # The user's own flags come last so that they win where ComfyUI lets a later flag win.
    return memory.flags + chosen.flags + ["--preview-method", "auto"] + list(extra)
