"""`comfyctl doctor`: what is misconfigured, checked without starting anything."""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from comfy_stack import startup
from comfy_stack import variables as v
from comfy_stack.env import Env
from comfyctl import config, modes
from comfyctl.errors import ComfyctlError, ConfigError, ProblemsFound
from model_sync.settings import load_storage


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--comfyui-dir")
    p.add_argument("--comfyui-python")
    p.add_argument("--data-dir")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


def checks(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> list[Check]:
    out: list[Check] = []
    env = Env(environ, error=ConfigError)
    try:
        s = config.load(args, env)
        storage = load_storage(env)
    except ComfyctlError as exc:
        return [Check("configuration", False, str(exc))]
    out.append(Check("configuration", True, f"ComfyUI at {s.comfyui_dir}, data in {s.data_dir}"))
    if s.bootstrap and not s.comfyui_python.exists():
        out.append(
            Check(
                "ComfyUI's interpreter",
                True,
                f"COMFYUI_DIR is unset: the first `comfyctl serve` "
                f"fetches the pinned ComfyUI and makes its venv in "
                f"{s.comfyui_python.parents[2]}",
            )
        )
        return out + later_checks(s, env, storage)
    probe = subprocess.run(
        [str(s.comfyui_python), "-c", "import torch, aiohttp, safetensors; print(torch.__version__)"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    out.append(
        Check(
            "ComfyUI's interpreter",
            probe.returncode == 0,
            f"torch {probe.stdout.strip()}"
            if probe.returncode == 0
            else f"{s.comfyui_python} lacks ComfyUI's requirements: pip install -r {s.comfyui_dir}/requirements.txt",
        )
    )
    return out + later_checks(s, env, storage)


def later_checks(s: config.ServeSettings, env: Env, storage) -> list[Check]:
    out: list[Check] = []
    # serve creates the directory: it must be writable, or creatable in a writable parent
    existing = next(p for p in (s.data_dir, *s.data_dir.parents) if p.exists())
    writable = os.access(existing, os.W_OK)
    out.append(
        Check("data directory", writable, str(s.data_dir) if writable else f"{s.data_dir} is not writable")
    )
    for name, port in (("proxy port", s.proxy_port), ("ComfyUI port", s.comfyui_port)):
        free = port_free(port)
        out.append(
            Check(
                name,
                free,
                f"{port} is free" if free else f"{port} is in use: stop what uses it or change the port",
            )
        )
    password = env.is_set(v.COMFY_ADMIN_PASSWORD)
    # the accounts live in the job ledger's database (or, before accounts, in admin.json)
    stored = (s.proxy_jobs_dir / "ledger.db").exists() or (s.data_dir / "auth" / "admin.json").exists()
    out.append(
        Check(
            "admin password",
            bool(password or stored),
            "set"
            if password
            else "stored from an earlier start"
            if stored
            else "none set: admin/admin until the first login changes it (set COMFY_ADMIN_PASSWORD)",
        )
    )
    if s.sync_from.startswith("oss://"):
        creds = (
            (storage.oss_access_key_id and storage.oss_access_key_secret)
            or storage.oss_ecs_ram_role
            or env.is_set(v.ALIBABA_CLOUD_ROLE_ARN)
        )
        out.append(
            Check(
                "OSS credentials",
                bool(creds and storage.oss_endpoint),
                "present"
                if creds and storage.oss_endpoint
                else "MODEL_SYNC_FROM is oss:// but OSS_ENDPOINT or credentials (OSS_ACCESS_KEY_ID/"
                "OSS_ACCESS_KEY_SECRET, OSS_ECS_RAM_ROLE or RRSA) are missing",
            )
        )
    gpus = modes.detect_gpus()
    choice = modes.choose_memory_flags(s.mode, gpus)
    out.append(Check("ComfyUI mode", True, f"{' '.join(choice.flags) or 'default'}: {choice.why}"))
    out.append(attention_check(s, choice))
    if gpus:
        warning = modes.driver_warning(gpus, s.cuda_version)
        out.append(Check("GPU driver", warning is None, warning or f"{gpus[0].driver or 'unknown'}"))
    sup = shutil.which("supervisord") or shutil.which("supervisord", path=str(Path(sys.executable).parent))
    out.append(Check("supervisord", bool(sup), sup or "not installed: pip install supervisor"))
    out.append(Check("last start", True, last_start(s.run_dir)))
    return out


def attention_check(s: config.ServeSettings, memory: modes.Choice) -> Check:
    """What the next start passes for COMFYUI_ATTENTION, asked of ComfyUI's interpreter as
    the start asks it; an explicit choice whose package is missing is what stops the start."""
    cpu = modes.runs_on_cpu(memory, s.extra_args)
    if not cpu and not s.comfyui_python.exists():
        return Check(
            "attention", True, f"COMFYUI_ATTENTION={s.attention}: checked once ComfyUI's venv is made"
        )
    try:
        chosen = modes.choose_attention_flags(s.attention, s.comfyui_python, cpu, s.extra_args)
    except ConfigError as exc:
        return Check("attention", False, str(exc))
    return Check("attention", True, f"{' '.join(chosen.flags) or 'no flag'}: {chosen.why}")


def last_start(run_dir: Path) -> str:
    """The last (or running) start in its timed phases, with each pack's import time:
    why a start is slow, and what a running one waits for (comfy_stack.startup)."""
    serve, comfyui = (startup.read(run_dir / f) for f in (startup.SERVE_FILE, startup.COMFYUI_FILE))
    if serve is None:
        return f"none recorded in {run_dir} yet"

    def phases(t: startup.Timeline) -> str:
        return ", ".join(
            f"{p.name} {p.seconds:.2f} s" if p.seconds is not None else f"{p.name} ..." for p in t.phases
        )

    said = [f"serve {serve.total():.2f} s ({phases(serve)})"]
    if comfyui:
        said.append(f"ComfyUI {comfyui.total():.2f} s ({phases(comfyui)})")
        packs = sorted(comfyui.packs.items(), key=lambda kv: -kv[1])
        if packs:
            said.append("packs: " + ", ".join(f"{n} {t:.1f} s" for n, t in packs))
        if comfyui.failed_packs:
            said.append("IMPORT FAILED: " + ", ".join(comfyui.failed_packs))
    if waiting := startup.waiting_for(serve, comfyui):
        said.append(f"now waiting for {waiting}")
    return "; ".join(said)


def main(args: argparse.Namespace) -> int:
    results = checks(args)
    width = max(len(c.name) for c in results)
    for c in results:
        print(f"{'ok ' if c.ok else 'BAD'}  {c.name:<{width}}  {c.detail}")
    # a default password and an old driver are warned about, not fatal: both can still run
    bad = [c for c in results if not c.ok and c.name not in ("admin password", "GPU driver")]
    return ProblemsFound.exit_code if bad else 0
