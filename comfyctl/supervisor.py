"""supervisord's configuration: ComfyUI and the proxy, restarted when they die, logging
to the container's stdout with a prefix, stopped cleanly on SIGTERM."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from comfy_stack import run_files, startup
from comfy_stack.files import SHARED, write_atomic
from comfyctl import background, user_packages
from comfyctl.config import ServeSettings

PREFIX_WRAPPER = "comfyctl.logprefix"
SOCKET = "supervisor.sock"
# supervisord waits on its sockets for up to a second before it first starts its programs
# (supervisor/supervisord.py, runforever: poll, then the programs' transitions), which made
# every start a second longer; a connection to its control socket ends that wait at once.
WAKE = (
    "import socket, sys, time\n"
    "end = time.monotonic() + 30\n"
    "while time.monotonic() < end:\n"
    "    try:\n"
    "        with socket.socket(socket.AF_UNIX) as s:\n"
    "            s.connect(sys.argv[1])\n"
    "        break\n"
    "    except OSError:\n"  # not there yet, or a stale socket of an earlier run
    "        time.sleep(0.02)\n"
)


def _program(
    name: str,
    command: list[str],
    directory: Path,
    env: dict[str, str],
    stopwait: int,
    priority: int,
    timeline: Path | None = None,
) -> str:
    # stdout goes through a tiny prefixer so the two programs' lines can be told apart in
    # one stream; supervisord has no line prefix of its own. It also times ComfyUI's start.
    timed = ["--timeline", str(timeline)] if timeline else []
    wrapped = [sys.executable, "-m", PREFIX_WRAPPER, name, *timed, "--"] + command
    envs = ",".join(f'{k}="{v}"' for k, v in env.items() if '"' not in v and "%" not in v)
    return "\n".join(
        [
            f"[program:{name}]",
            f"command={' '.join(shlex.quote(c) for c in wrapped)}",
            f"directory={directory}",
            f"priority={priority}",
            "autostart=true",
            "autorestart=true",
            "startsecs=2",
            "startretries=1000",
            "stopsignal=TERM",
            f"stopwaitsecs={stopwait}",
            "stopasgroup=true",
            "killasgroup=true",
            "stdout_logfile=/dev/stdout",
            "stdout_logfile_maxbytes=0",
            "redirect_stderr=true",
            f"environment={envs}" if envs else "",
            "",
        ]
    )


def comfyui_env(s: ServeSettings) -> dict[str, str]:
    # nothing downloads at run time once models are synced
    env = {"PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": s.hf_hub_offline}
    if s.numba_cache:
        env["NUMBA_CACHE_DIR"] = str(s.run_dir / run_files.NUMBA_CACHE)  # seeded by comfyctl.numba_cache
    if s.user_packages:
        # What ComfyUI-Manager installs for a node (`pip install` in ComfyUI's process)
        # goes to the data volume as a user install, and ComfyUI sees it there. Only
        # ComfyUI: the proxy and the sync keep PYTHONNOUSERSITE and never import it.
        env |= {
            "PYTHONUSERBASE": str(s.user_packages),
            "PYTHONNOUSERSITE": "",
            "PIP_CONFIG_FILE": str(user_packages.pip_config(s.data_dir / "run")),
        }
    return env


def render(s: ServeSettings, comfy_args: list[str], run_dir: Path, proxy_env: dict[str, str]) -> str:
    comfy_cmd = [
        str(s.comfyui_python),
        "main.py",
        "--listen",
        "127.0.0.1",
        "--port",
        str(s.comfyui_port),
        "--extra-model-paths-config",
        str(run_dir / "extra_model_paths.yaml"),
        "--input-directory",
        str(s.data_dir / "input"),
        "--output-directory",
        str(s.data_dir / "output"),
        "--user-directory",
        str(s.data_dir / "user"),
        # each account's workflows and settings in its own user folder; the gate sets the
        # user from the login (auth_proxy/comfy_users.py, comfyctl/comfy_users.py)
        "--multi-user",
        # ComfyUI's defaults put its database and its temp folder beside its code,
        # which is read-only in the image: both go to the data directory
        "--database-url",
        f"sqlite:///{s.data_dir / 'user' / 'comfyui.db'}",
        "--temp-directory",
        str(run_dir),
        "--disable-auto-launch",
    ] + comfy_args
    proxy_cmd = [sys.executable, "-m", "auth_proxy"]
    return "\n".join(
        [
            "[supervisord]",
            "nodaemon=true",
            f"pidfile={run_dir / 'supervisord.pid'}",
            f"logfile={run_dir / 'supervisord.log'}",
            "logfile_maxbytes=10MB",
            "logfile_backups=1",
            "loglevel=info",
            "",
            "[unix_http_server]",
            f"file={run_dir / SOCKET}",
            "chmod=0700",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            f"serverurl=unix://{run_dir / SOCKET}",
            "",
            # ComfyUI gets time to finish writing an output; the proxy stops at once.
            _program(
                "comfyui", comfy_cmd, s.comfyui_dir, comfyui_env(s), 30, 10, run_dir / startup.COMFYUI_FILE
            ),
            _program("auth_proxy", proxy_cmd, Path.cwd(), proxy_env, 10, 20),
        ]
    )


def wake_when_up(run_dir: Path) -> None:
    """Connect once to supervisord's control socket as soon as it listens, from a process
    beside it (supervisord then starts its programs without its first second's wait)."""
    background.orphan([sys.executable, "-I", "-S", "-c", WAKE, str(run_dir / SOCKET)])


def write(text: str, dest: Path) -> Path:
    return write_atomic(dest, text, mode=SHARED)


def oneshot(name: str, command: list[str], env: dict[str, str]) -> str:
    """A program run once at start (the background model sync): not restarted on exit."""
    text = _program(name, command, Path.cwd(), env, 10, 5)
    return "\n" + text.replace("autorestart=true", "autorestart=false").replace("startsecs=2", "startsecs=0")
