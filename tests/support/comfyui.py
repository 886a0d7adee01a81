"""Starting a real ComfyUI for the opt-in tier (COMFYUI_DIR, COMFYUI_PYTHON), and the smoke
workflow every tier runs."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

from tests.support import REPO, comfyui_paths, free_port, stop_process, wait_until

# EmptyImage -> ImageInvert -> ImageScale -> SaveImage: runs on CPU in well under a second.
SMOKE_WORKFLOW = REPO / "workflows/api/smoke.json"
SMOKE_PROMPT = json.loads(SMOKE_WORKFLOW.read_text(encoding="utf-8"))["prompt"]


class RealComfyUI:
    def __init__(self, data: Path, extra_args: tuple[str, ...] = ()):
        self.dir, self.python = comfyui_paths()
        self.port = free_port()
        self.data = data
        self.extra_args = extra_args
        self.proc: subprocess.Popen | None = None
        self.log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> RealComfyUI:
        """Started and answering, or stopped again (never left running) with its log's end."""
        for d in ("output", "input", "user"):
            (self.data / d).mkdir(parents=True, exist_ok=True)
        self.log = open(self.data / "comfyui.log", "wb")
        self.proc = subprocess.Popen(
            [
                str(self.python),
                "main.py",
                "--cpu",
                "--listen",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--output-directory",
                str(self.data / "output"),
                "--input-directory",
                str(self.data / "input"),
                "--user-directory",
                str(self.data / "user"),
                "--disable-auto-launch",
                *self.extra_args,
            ],
            cwd=self.dir,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(
                lambda: (
                    self.proc.poll() is not None
                    or urllib.request.urlopen(self.url + "/system_stats", timeout=2).status == 200
                ),
                timeout=timeout,
                interval=0.5,
                what="ComfyUI to answer /system_stats",
            )
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}")
        except (TimeoutError, RuntimeError) as exc:
            self.stop()
            tail = (self.data / "comfyui.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"ComfyUI did not start ({exc}); the end of its log:\n{tail}") from None
        return self

    def stop(self) -> None:
        if self.proc:
            stop_process(self.proc)
        if self.log:
            self.log.close()
