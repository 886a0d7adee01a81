"""Helpers shared by the test suites: polling, free ports, tool checks, subprocesses."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")

# .ci/run sets this: there a missing tool is a broken CI machine, not a reason to skip.
STRICT = os.environ.get("COMFY_STACK_STRICT_TESTS") == "1"


def wait_until(
    check: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, what: str = "condition"
) -> T:
    """Poll `check` until it returns a truthy value; raise with `what` on timeout.

    Exceptions from `check` count as "not yet" so that a server still starting
    (connection refused) does not end the wait early.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last_error = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"timed out after {timeout}s waiting for {what}"
                + (f" (last error: {last_error!r})" if last_error else "")
            )
        time.sleep(interval)


def http_status(url: str) -> int:
    """The status a JSON client gets for GET `url` (an error status too, not an exception)."""
    try:
        req = urllib.request.Request(url, headers={"Accept": "application/json"})
        with urllib.request.urlopen(req, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need(ok: bool, reason: str) -> None:
    """Skip with `reason` when a prerequisite is missing; fail instead under CI."""
    if ok:
        return
    if STRICT:
        pytest.fail(f"required by CI but missing: {reason}")
    pytest.skip(reason)


def need_tool(name: str) -> str:
    """Path of an executable on PATH or in the venv's bin, or skip/fail."""
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    need(path is not None, f"{name} is not installed")
    return path  # type: ignore[return-value]


def comfyui_paths() -> tuple[Path, Path]:
    """The opt-in tier's ComfyUI checkout and interpreter; skips when unset (even in CI)."""
    d, p = os.environ.get("COMFYUI_DIR"), os.environ.get("COMFYUI_PYTHON")
    if not d or not p:
        pytest.skip("opt-in tier: set COMFYUI_DIR and COMFYUI_PYTHON to run against a real ComfyUI")
    return Path(d), Path(p)


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    need(False, "Chromium is not installed (Debian: apt-get install chromium)")
    return ""


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def python_env(**extra: str) -> dict[str, str]:
    """Environment for a child Python that imports the project from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def start_serve(data: Path, env: dict[str, str], log) -> subprocess.Popen:
    """`comfyctl serve --data-dir DATA` from the checkout, writing to `log`, in its own
    process group: stop it with `stop_process(proc, ..., group=True)`."""
    return subprocess.Popen(
        [sys.executable, "-m", "comfyctl", "serve", "--data-dir", str(data)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_process(proc: subprocess.Popen, timeout: float = 10.0, group: bool = False) -> None:
    """SIGTERM, then SIGKILL after `timeout`. With `group`, to the process's whole group (one
    started with start_new_session=True): `comfyctl serve` and its children go together."""
    if proc.poll() is None:
        send = (lambda sig: os.killpg(proc.pid, sig)) if group else proc.send_signal
        send(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            send(signal.SIGKILL)
            proc.wait()


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory now (VmRSS) or at its peak (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for process {pid}")


def peak_rss_mb(pid: int) -> float:
    return rss_mb(pid, "VmHWM")
