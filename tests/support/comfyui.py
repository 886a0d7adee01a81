"""Starting a real ComfyUI for the opt-in tier (COMFYUI_DIR, COMFYUI_PYTHON)."""
from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

from tests.support import comfyui_paths, free_port, stop_process, wait_until

# EmptyImage -> ImageInvert -> ImageScale -> SaveImage: runs on CPU in well under a second.
SMOKE_PROMPT = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "ImageScale", "inputs": {"image": ["2", 0], "upscale_method": "nearest-exact",
                                                 "width": 32, "height": 32, "crop": "disabled"}},
    "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "smoke/smoke"}},
}


class RealComfyUI:
    def __init__(self, data: Path, extra_args: tuple[str, ...] = ()):
        self.dir, self.python = comfyui_paths()
        self.port = free_port()
        self.data = data
        self.extra_args = extra_args
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> "RealComfyUI":
        for d in ("output", "input", "user"):
            (self.data / d).mkdir(parents=True, exist_ok=True)
        self.log = open(self.data / "comfyui.log", "wb")
        self.proc = subprocess.Popen(
            [str(self.python), "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
             "--output-directory", str(self.data / "output"), "--input-directory", str(self.data / "input"),
             "--user-directory", str(self.data / "user"), "--disable-auto-launch", *self.extra_args],
            cwd=self.dir, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: urllib.request.urlopen(self.url + "/system_stats", timeout=2).status == 200,
                   timeout=timeout, interval=0.5, what="ComfyUI to answer /system_stats")
        return self

    def stop(self) -> None:
        if self.proc:
            stop_process(self.proc)
        self.log.close()
