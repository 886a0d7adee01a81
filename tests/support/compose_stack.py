"""The repository's compose.yaml run as a user runs it: copied into a folder with a test
.env beside it (and a compose.override.yaml where the tier needs one), `docker compose
--profile cpu up -d`, then everything checked through the published port."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import REPO, wait_until

SERVICE = "comfy-cpu"


@dataclass
class Stack:
    compose: str  # the docker-compose binary
    folder: Path
    project: str
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run(
            [self.compose, "-p", self.project, *args],
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and out.returncode != 0:
            raise AssertionError(
                f"docker compose {' '.join(args)} exited {out.returncode}:\n{out.stderr[-4000:]}"
            )
        return out

    def exec(self, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.run("exec", "-T", SERVICE, *cmd, timeout=timeout, check=False)

    def python(self, code: str, timeout: float = 120) -> str:
        out = self.exec("python", "-c", code, timeout=timeout)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    def container(self) -> str:
        return self.run("ps", "-q", SERVICE).stdout.strip()

    def logs(self) -> str:
        return self.run("logs", "--no-color", SERVICE, timeout=120).stdout

    def health(self, docker: str) -> str:
        out = subprocess.run(
            [docker, "inspect", "-f", "{{.State.Health.Status}}", self.container()],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return out.stdout.strip()

    def wait_healthy(self, docker: str, timeout: float = 900) -> float:
        """Seconds until the image's own HEALTHCHECK said healthy."""
        started = time.monotonic()
        wait_until(
            lambda: self.health(docker) == "healthy",
            timeout=timeout,
            interval=3,
            what="the container's HEALTHCHECK to say healthy",
        )
        return time.monotonic() - started


def make(
    compose: str, folder: Path, project: str, port: int, env: dict[str, str], override: dict | None = None
) -> Stack:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO / "compose.yaml", folder / "compose.yaml")
    (folder / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    if override:
        (folder / "compose.override.yaml").write_text(json.dumps(override))
    return Stack(compose, folder, project, port)


def get(url: str, headers: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)
