"""Benchmark: how long a start takes, against ComfyUI alone in the same image, in one run.

Needs Docker and the CPU image (`make build-cpu`; `--image` names another tag).
  reference  `docker run` of the image with ComfyUI's own `main.py --cpu
             --disable-all-custom-nodes` as the command: ComfyUI alone, as fast as it starts;
  packs      the same with every pack loaded (numba's cache from the image, Manager offline,
             as our start gives them), still no gate: the floor for a start with every pack;
  ours       `docker run` of the image as users run it (entrypoint, every pack, the gate),
             models sync off;
each from the `docker run` until the first 200 (the reference's `/`, our `/readyz`, which is
200 only once ComfyUI answers behind the gate), alternating, ROUNDS of each; then ComfyUI
killed with SIGKILL inside our running container (a crash or the OOM killer) until /readyz
is 200 again. Also read from our container: the start's timed phases and each pack's import
time (comfy_stack.startup). Prints a table with ratios (best and median) and writes
bench/results/start.json. Run it as `python -m bench.start` (make bench-start).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

from bench import save

ROUNDS = 3
PASSWORD = "bench-start-password"
TIMEOUT_S = 900


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def until_200(url: str, since: float, cid: str, after: float = 0.0) -> float:
    """Seconds from `since` until `url` answers 200 (polled every 50 ms, not before `after`)."""
    checked = time.monotonic()
    while time.monotonic() - since < TIMEOUT_S:
        if time.monotonic() >= after and status(url) == 200:
            return time.monotonic() - since
        if time.monotonic() - checked > 2:
            checked = time.monotonic()
            if not docker("ps", "-q", "--filter", f"id={cid}").strip():
                raise RuntimeError(f"container {cid[:12]} exited before {url} answered")
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer 200 in {TIMEOUT_S} s")


def docker(*args: str, timeout: float = 120) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=True, timeout=timeout
    ).stdout


def start_reference(image: str, port: int) -> tuple[str, float]:
    """(container, when `docker run` was called)."""
    t0 = time.monotonic()
    cid = docker(
        "run", "-d", "-p", f"127.0.0.1:{port}:8188", "-w", "/opt/ComfyUI", "--entrypoint",
        "/opt/venv/bin/python", image, "main.py", "--cpu", "--listen", "0.0.0.0", "--port", "8188",
        "--disable-all-custom-nodes", "--disable-auto-launch", "--temp-directory", "/tmp",
        "--database-url", "sqlite:////tmp/comfyui.db", "--user-directory", "/data/user",
        "--input-directory", "/data/input", "--output-directory", "/data/output",
    ).strip()  # fmt: skip
    return cid, t0


def start_packs(image: str, port: int) -> tuple[str, float]:
    """(container, when `docker run` was called): ComfyUI with every pack, no gate."""
    setup = (
        "cp -r /opt/comfy-stack/numba-cache /tmp/numba && mkdir -p /tmp/user/default/ComfyUI-Manager && "
        "printf '[default]\\nnetwork_mode = offline\\nsecurity_level = normal\\n' "
        "> /tmp/user/default/ComfyUI-Manager/config.ini && exec python main.py --cpu --listen 0.0.0.0 "
        "--port 8188 --disable-auto-launch --temp-directory /tmp --database-url sqlite:////tmp/comfyui.db "
        "--user-directory /tmp/user --input-directory /data/input --output-directory /data/output"
    )
    t0 = time.monotonic()
    cid = docker(
        "run", "-d", "-p", f"127.0.0.1:{port}:8188", "-w", "/opt/ComfyUI", "-e", "NUMBA_CACHE_DIR=/tmp/numba",
        "--entrypoint", "sh", image, "-c", setup,
    ).strip()  # fmt: skip
    return cid, t0


def start_ours(image: str, port: int) -> tuple[str, float]:
    """(container, when `docker run` was called)."""
    t0 = time.monotonic()
    cid = docker(
        "run", "-d", "-p", f"127.0.0.1:{port}:8188", "-e", f"COMFY_ADMIN_PASSWORD={PASSWORD}",
        "-e", "COMFYUI_MODE=cpu", "-e", "MODEL_SYNC_MODE=off", image,
    ).strip()  # fmt: skip
    return cid, t0


def kill_comfyui(cid: str, port: int) -> float:
    """SIGKILL to ComfyUI inside the container; seconds until /readyz is 200 again. /readyz
    keeps ComfyUI's answer for a second, so a 200 counts only after that second."""
    t0 = time.monotonic()
    docker("exec", cid, "pkill", "-KILL", "-f", "main.py --listen")
    return until_200(f"http://127.0.0.1:{port}/readyz", t0, cid, after=t0 + 1.1)


def timeline(cid: str, name: str) -> dict:
    try:
        return json.loads(docker("exec", cid, "cat", f"/data/run/{name}"))
    except (subprocess.CalledProcessError, ValueError):
        return {}


def summary(xs: list[float]) -> dict:
    return {
        "best": round(min(xs), 2),
        "median": round(statistics.median(xs), 2),
        "all": [round(x, 2) for x in xs],
    }


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.start", description=__doc__.splitlines()[0])
    p.add_argument("--image", default=os.environ.get("IMAGE_TAG") or "comfy-stack:cpu")
    p.add_argument("--rounds", type=int, default=ROUNDS)
    args = p.parse_args()
    ref, packs, ours, kills = [], [], [], []
    starts = {
        "reference": (start_reference, ref, "/"),
        "packs": (start_packs, packs, "/"),
        "ours": (start_ours, ours, "/readyz"),
    }
    phases: dict = {}
    load_before = os.getloadavg()
    for i in range(args.rounds):
        for kind, (start, times, path) in starts.items():
            port = free_port()
            cid, t0 = start(args.image, port)
            try:
                took = until_200(f"http://127.0.0.1:{port}{path}", t0, cid)
                times.append(took)
                print(f"round {i + 1}: {kind} ready after {took:.2f} s", flush=True)
                if kind == "ours":
                    phases = {
                        "serve": timeline(cid, "start.json"),
                        "comfyui": timeline(cid, "comfyui-start.json"),
                    }
                    kills.append(kill_comfyui(cid, port))
                    print(f"round {i + 1}: ComfyUI killed -> ready again after {kills[-1]:.2f} s", flush=True)
            finally:
                if sys.exc_info()[0] is not None:
                    print(docker("logs", "--tail", "40", cid), file=sys.stderr)
                docker("rm", "-f", "-v", cid, timeout=120)
    result = {
        "image": args.image,
        "rounds": args.rounds,
        "reference (ComfyUI alone, no packs), seconds": summary(ref),
        "ComfyUI with every pack, no gate, seconds": summary(packs),
        "ours (entrypoint, every pack, the gate), seconds": summary(ours),
        "ComfyUI killed -> ready again, seconds": summary(kills),
        "ratio ours / reference (best)": round(min(ours) / min(ref), 2),
        "ratio ours / ComfyUI with every pack (best)": round(min(ours) / min(packs), 2),
        "ratio kill -> ready / reference (best)": round(min(kills) / min(ref), 2),
        "ratio ours / reference (median)": round(statistics.median(ours) / statistics.median(ref), 2),
        "phases of our last start": phases,
        "load average before, after": [round(x, 2) for x in (load_before[0], os.getloadavg()[0])],
    }
    print()
    print(f"{'':44}{'best':>8}{'median':>8}")
    for key in list(result)[2:6]:
        print(f"{key:44}{result[key]['best']:8.2f}{result[key]['median']:8.2f}")
    print(f"ours / reference: {result['ratio ours / reference (best)']}x (best), "
          f"{result['ratio ours / reference (median)']}x (median); "
          f"ours / ComfyUI with every pack: {result['ratio ours / ComfyUI with every pack (best)']}x; "
          f"kill -> ready / reference: {result['ratio kill -> ready / reference (best)']}x")  # fmt: skip
    comfy = phases.get("comfyui") or {}
    for ph in (phases.get("serve") or {}).get("phases", []) + comfy.get("phases", []):
        print(f"  phase {ph['name']:48} {ph['seconds']} s")
    for pack, s in sorted((comfy.get("packs") or {}).items(), key=lambda kv: -kv[1]):
        print(f"  pack  {pack:48} {s} s")
    print(f"wrote {save('start', result)}")


if __name__ == "__main__":
    main()
