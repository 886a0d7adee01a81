"""Benchmark: the bundled Wan 2.2 TI2V 5B workflow through the gate and on ComfyUI alone, per
attention backend, with weights of the real shapes and random values (nothing downloaded).

For each attention backend ComfyUI's interpreter has (COMFYUI_ATTENTION: `auto`, `sdpa`,
`xformers`, `sage`), the stack is started as users start it (`comfyctl serve`: the gate in
front of ComfyUI, models from a data folder) and workflows/api/wan22-ti2v-5b.json runs:
  cold     the first run through the gate: loading the three models, text encoding, sampling,
           VAE decode, the video saved and downloaded;
  gate     then REPEATS runs through the gate (Bearer token, WebSocket and /view through it),
  alone    and REPEATS runs straight on ComfyUI's own port (the reference), alternated, each
           with a new seed: the models and the text encoding stay loaded (ComfyUI's cache), as
           for a server's next job, so these time sampling, decode and the download.
Measured per run: seconds per sampling step (between the sampler's first and last progress
message, so the first step's warm-up is left out), the total from submission until the
video is downloaded, and the GPU's peak memory in use (nvidia-smi, sampled every 0.2 s).

`--size full` (the default where nvidia-smi finds a GPU) is the workflow as bundled,
1280x704 and 121 frames, with STEPS sampling steps. `--size tiny` (the default on a CPU)
checks the same path end to end on a CPU in about a minute: the diffusion model is a small
configuration of the same architecture (bench/wan_weights.py: TINY_DIT), 64x64 and 5
frames, 2 steps, and the text encoder's padding to 512 tokens is turned off with ComfyUI's
own T5TokenizerOptions node (the umt5-xxl encoder keeps its real size: ComfyUI fixes it);
on a CPU the attention setting is ignored, so only `auto` runs. Prints a table and writes
bench/results/gpu.json. Needs COMFYUI_DIR and COMFYUI_PYTHON (a ComfyUI with torch; the
one `make serve` makes in data/comfyui/ is used when they are unset). `make bench-gpu`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench import save
from comfyctl import modes
from comfyctl.config import managed_paths
from tests.support import REPO, free_port, http_status, python_env, start_serve, stop_process, wait_until

WORKFLOW = REPO / "workflows/api/wan22-ti2v-5b.json"
SAMPLER = "3"  # the workflow's KSampler
STEPS = 8
REPEATS = 2
PASSWORD = "bench-gpu-password"
CACHE = REPO / "build" / "bench-gpu"
SIZES = {
    "full": {"width": 1280, "height": 704, "length": 121, "steps": STEPS},
    "tiny": {"width": 64, "height": 64, "length": 5, "steps": 2},
}


def workflow(size: str, seed: int, steps: int | None = None) -> dict:
    """The bundled workflow at `size`; tiny also stops the text encoder padding to 512 tokens."""
    prompt = json.loads(WORKFLOW.read_text())["prompt"]
    s = SIZES[size]
    prompt["5"]["inputs"].update(width=s["width"], height=s["height"], length=s["length"])
    prompt[SAMPLER]["inputs"].update(seed=seed, steps=steps or s["steps"])
    if size == "tiny":
        prompt["12"] = {
            "class_type": "T5TokenizerOptions",
            "inputs": {"clip": ["6", 0], "min_padding": 0, "min_length": 0},
        }
        for encode in ("7", "8"):
            prompt[encode]["inputs"]["clip"] = ["12", 0]
    return prompt


def weights(size: str, comfyui_dir: Path, python: Path, cache: Path = CACHE) -> Path:
    """The models folder with the workflow's three files (bench.wan_weights, run in ComfyUI's
    interpreter; kept in `cache` and rewritten only when the shapes change)."""
    out = cache / size
    env = python_env(COMFYUI_DIR=str(comfyui_dir))
    subprocess.run(
        [str(python), "-m", "bench.wan_weights", "--size", size, "--out", str(out)],
        cwd=REPO,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return out


class VramPeak:
    """The most GPU memory in use while it runs (nvidia-smi every 0.2 s); None without a GPU."""

    def __init__(self) -> None:
        self.exe = shutil.which("nvidia-smi")
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            out = subprocess.run(
                [self.exe, "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
            )
            if out.returncode == 0 and out.stdout.split():
                used = int(out.stdout.split()[0])
                self.peak = max(self.peak or 0, used)
            self._stop.wait(0.2)

    def __enter__(self) -> VramPeak:
        if self.exe:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.exe:
            self._thread.join()


@dataclass
class Run:
    total_s: float
    step_times: list[float]
    video: bytes
    peak_vram_mib: int | None

    @property
    def s_per_step(self) -> float | None:
        t = self.step_times
        return (t[-1] - t[0]) / (len(t) - 1) if len(t) > 1 else None


async def run_once(base: str, headers: dict[str, str], prompt: dict, timeout: float) -> Run:
    """Submit `prompt`, follow it over the WebSocket, download its video: what a client does."""
    client = uuid.uuid4().hex
    steps: list[float] = []
    with VramPeak() as vram:
        async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)) as s:
            async with s.ws_connect(f"{base}/ws?clientId={client}", max_msg_size=0) as ws:
                started = time.monotonic()
                async with s.post(f"{base}/prompt", json={"prompt": prompt, "client_id": client}) as r:
                    body = await r.json()
                    if r.status != 200:
                        raise RuntimeError(f"{base} refused the workflow: {json.dumps(body)[:2000]}")
                    pid = body["prompt_id"]
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        continue
                    m = json.loads(msg.data)
                    data = m.get("data") or {}
                    if data.get("prompt_id") != pid:
                        continue
                    if m["type"] == "progress" and data.get("node") == SAMPLER:
                        steps.append(time.monotonic())
                    elif m["type"] == "execution_error":
                        raise RuntimeError(f"the workflow failed: {data.get('exception_message')}")
                    elif m["type"] == "execution_success" or (
                        m["type"] == "executing" and data["node"] is None
                    ):
                        break
            # ComfyUI writes the history just after its last message: ask until it is there
            while True:
                async with s.get(f"{base}/history/{pid}") as r:
                    history = await r.json()
                if pid in history:
                    break
                await asyncio.sleep(0.05)
            outputs = history[pid]["outputs"]
            saved = [f for out in outputs.values() for f in out.get("images", [])]
            if not saved:
                raise RuntimeError(f"the workflow saved nothing: {outputs}")
            query = {k: saved[0][k] for k in ("filename", "subfolder", "type")}
            async with s.get(f"{base}/view", params=query) as r:
                r.raise_for_status()
                video = await r.read()
        total = time.monotonic() - started
    return Run(total, steps, video, vram.peak)


@dataclass
class Stack:
    """`comfyctl serve` with COMFYUI_ATTENTION=backend, the models linked into its data folder."""

    comfyui_dir: Path
    python: Path
    models: Path
    backend: str
    cpu: bool
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-gpu-")))

    def __post_init__(self) -> None:
        self.port, self.comfy_port = free_port(), free_port()
        self.data = self.root / "data"
        for folder in ("diffusion_models", "vae", "text_encoders"):
            (self.data / "models" / folder).mkdir(parents=True)
            for f in (self.models / folder).iterdir():
                (self.data / "models" / folder / f.name).symlink_to(f.resolve())
        self.env = python_env(
            COMFYUI_DIR=str(self.comfyui_dir),
            COMFYUI_PYTHON=str(self.python),
            MODEL_SYNC_MODE="off",
            AUTH_PROXY_LISTEN=f"127.0.0.1:{self.port}",
            COMFYUI_PORT=str(self.comfy_port),
            COMFYUI_MODE="cpu" if self.cpu else "auto",
            COMFYUI_ATTENTION=self.backend,
            COMFY_ADMIN_PASSWORD=PASSWORD,
            PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
        )
        self.log_path = self.root / "serve.log"
        self.proc: subprocess.Popen | None = None

    @property
    def gate(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alone(self) -> str:
        return f"http://127.0.0.1:{self.comfy_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> Stack:
        self.proc = start_serve(self.data, self.env, open(self.log_path, "wb"))
        try:
            wait_until(
                lambda: self.proc.poll() is not None or http_status(self.gate + "/readyz") == 200,
                timeout=600,
                interval=0.2,
                what="ComfyUI behind the gate",
            )
            if self.proc.poll() is not None:
                raise RuntimeError(f"comfyctl serve exited {self.proc.returncode}:\n{self.log()[-3000:]}")
            self.token = subprocess.run(
                [sys.executable, "-m", "auth_proxy", "token", "create", "bench-gpu"],
                cwd=REPO,
                env={**self.env, "AUTH_PROXY_STATE_DIR": str(self.data / "auth")},
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()[-1]
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.proc:
            stop_process(self.proc, 60, group=True)
        shutil.rmtree(self.root, ignore_errors=True)


def summary(runs: list[Run]) -> dict:
    per_step = [r.s_per_step for r in runs if r.s_per_step is not None]
    peaks = [r.peak_vram_mib for r in runs if r.peak_vram_mib is not None]
    return {
        "s_per_step": round(statistics.median(per_step), 3) if per_step else None,
        "total_s": round(statistics.median(r.total_s for r in runs), 2),
        "peak_vram_mib": max(peaks) if peaks else None,
        "runs": len(runs),
    }


def measure(
    size: str,
    backend: str,
    comfyui_dir: Path,
    python: Path,
    models: Path,
    repeats: int = REPEATS,
    steps: int | None = None,
    timeout: float = 3600,
) -> dict:
    """One backend: a cold run through the gate, then `repeats` runs each way, alternated."""
    with Stack(comfyui_dir, python, models, backend, cpu=size == "tiny") as stack:
        bearer = {"Authorization": f"Bearer {stack.token}"}
        cold = asyncio.run(run_once(stack.gate, bearer, workflow(size, 1, steps), timeout))
        gate: list[Run] = []
        alone: list[Run] = []
        for i in range(repeats):
            order = [(gate, stack.gate, bearer), (alone, stack.alone, {})]
            for runs, base, headers in order if i % 2 == 0 else order[::-1]:
                runs.append(
                    asyncio.run(
                        run_once(base, headers, workflow(size, 2 + len(gate) + len(alone), steps), timeout)
                    )
                )
        log = stack.log()
    attention = [
        line.split("ComfyUI attention: ", 1)[1] for line in log.splitlines() if "ComfyUI attention: " in line
    ]
    g, a = summary(gate), summary(alone)
    return {
        "attention": attention[-1] if attention else None,
        "detected": "Requested to load WAN22" in log,
        "cold_s": round(cold.total_s, 2),
        "steps_seen": len(cold.step_times),
        "video_bytes": len(cold.video),
        "video_is_mp4": cold.video[4:8] == b"ftyp",
        "gate": g,
        "alone": a,
        "gate_over_alone_total": round(g["total_s"] / a["total_s"], 3) if a["total_s"] else None,
    }


def backends(python: Path, cpu: bool) -> list[str]:
    """`auto` and `sdpa` always; `xformers` and `sage` where ComfyUI's interpreter has them.
    On a CPU only `auto`: the setting is ignored there."""
    if cpu:
        return ["auto"]
    have = modes.installed(python, ("xformers", "sageattention"))
    return ["auto", "sdpa"] + [b for b, pkg in modes.ATTENTION_PACKAGE.items() if pkg in have]


def comfyui() -> tuple[Path, Path]:
    d, p = os.environ.get("COMFYUI_DIR"), os.environ.get("COMFYUI_PYTHON")
    if d and p:
        return Path(d), Path(p)
    made = managed_paths(Path("data").resolve())  # what `make serve` makes without a checkout
    if (made[0] / "main.py").is_file() and made[1].exists():
        return made
    raise SystemExit("set COMFYUI_DIR and COMFYUI_PYTHON (a ComfyUI whose interpreter has torch)")


def table(result: dict) -> str:
    rows = [
        f"{'backend':<9} {'route':<6} {'s/step':>8} {'total s':>8} {'peak VRAM MiB':>14}",
    ]
    for name, r in result["backends"].items():
        for route in ("gate", "alone"):
            m = r[route]
            step = f"{m['s_per_step']:.3f}" if m["s_per_step"] is not None else "-"
            vram = str(m["peak_vram_mib"]) if m["peak_vram_mib"] is not None else "-"
            rows.append(f"{name:<9} {route:<6} {step:>8} {m['total_s']:>8.2f} {vram:>14}")
        rows.append(
            f"{'':<9} cold   {'':>8} {r['cold_s']:>8.2f}   gate/alone total {r['gate_over_alone_total']}"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.splitlines()[0])
    gpus = modes.detect_gpus()
    p.add_argument("--size", choices=sorted(SIZES), default="full" if gpus else "tiny")
    p.add_argument("--steps", type=int, help=f"sampling steps (default: full {STEPS}, tiny 2)")
    p.add_argument("--repeats", type=int, default=REPEATS)
    p.add_argument("--backend", action="append", help="only these COMFYUI_ATTENTION values")
    args = p.parse_args(argv)
    comfy_dir, python = comfyui()
    cpu = args.size == "tiny"
    print(f"writing {args.size} weights of the real shapes (cached in {CACHE})", flush=True)
    models = weights(args.size, comfy_dir, python)
    result: dict = {
        "device": f"{gpus[0].name}, {gpus[0].memory_mib} MiB" if gpus and not cpu else "CPU",
        "size": args.size,
        "inputs": {**SIZES[args.size], **({"steps": args.steps} if args.steps else {})},
        "weights": json.loads((models / "weights.json").read_text())["want"]["dit"],
        "backends": {},
    }
    for backend in args.backend or backends(python, cpu):
        print(f"COMFYUI_ATTENTION={backend} ...", flush=True)
        result["backends"][backend] = measure(
            args.size, backend, comfy_dir, python, models, args.repeats, args.steps
        )
    out = save("gpu", result)
    print(table(result))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
