"""Helpers of the model_sync suites: sample model files, uploads, and the real CLI run in a
child process with the suite's settings (small parts, short back-off)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save

from tests.support import python_env
from tests.support.oss_adapter import ACCESS_KEY_ID

PART = 64 * 1024  # small parts so small files still have many ranges


def safetensors_bytes(n_floats: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return save(
        {
            "weight": rng.standard_normal(n_floats).astype(np.float32),
            "bias": rng.standard_normal(7).astype(np.float32),
        }
    )


def upload(s3, bucket: str, files: dict[str, bytes], prefix: str = "models") -> None:
    client = s3.client()
    for rel, data in files.items():
        client.put_object(Bucket=bucket, Key=f"{prefix}/{rel}" if prefix else rel, Body=data)


def sample_files() -> dict[str, bytes]:
    """A tree as a bucket's models prefix holds it: <folder>/<path>."""
    return {
        "checkpoints/big.safetensors": safetensors_bytes(150_000, 1),  # ~600 KB, 10 parts
        "loras/style/small.safetensors": safetensors_bytes(3_000, 2),
        "vae/v.pt": os.urandom(200_000),
        "upscale_models/empty.pth": b"",
    }


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str

    @property
    def summary(self) -> dict:
        for line in reversed(self.stdout.splitlines()):
            if line.startswith('{"summary"'):
                return json.loads(line)["summary"]
        raise AssertionError(f"no summary line (rc {self.rc}):\n{self.stdout}\n{self.stderr[-3000:]}")


def cli_env(**extra: str) -> dict[str, str]:
    env = python_env(
        MODEL_SYNC_PART_SIZE=str(PART),
        MODEL_SYNC_RANGE_THREADS="4",
        MODEL_SYNC_BACKOFF="0.05",
        MODEL_SYNC_RETRIES="4",
        MODEL_SYNC_TIMEOUT="10",
        MODEL_SYNC_MIN_FREE_MARGIN="0",
        AWS_EC2_METADATA_DISABLED="true",
    )
    for k in (
        "MODEL_PROFILES",
        "MODEL_SYNC_FROM",
        "MODEL_SYNC_PROGRESS_FILE",
        "OSS_ACCESS_KEY_ID",
        "OSS_ACCESS_KEY_SECRET",
        "OSS_ENDPOINT",
        "HF_TOKEN",
        "HF_ENDPOINT",
        "MODEL_SYNC_TEMPLATES_DIR",
        "COMFYUI_PYTHON",
    ):
        env.pop(k, None)
    env.update(extra)
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 60) -> Result:
    p = subprocess.run(
        [sys.executable, "-m", "model_sync", *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    return Result(p.returncode, p.stdout, p.stderr)


def spawn_cli(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "model_sync", *args],
        env=env,
        stdout=open(log.with_suffix(".out"), "w"),
        stderr=open(log, "w"),
    )


def oss_env(endpoint: str, **extra: str) -> dict[str, str]:
    return cli_env(
        **{
            "OSS_ENDPOINT": endpoint,
            "OSS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "OSS_ACCESS_KEY_SECRET": "oss-test-secret",
            **extra,
        }
    )


def tree(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every visible file (model_sync's hidden state excluded)."""
    out = {}
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not any(part.startswith(".") for part in rel.split("/")):
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def digests(files: dict[str, bytes]) -> dict[str, str]:
    return {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}


def leftovers(root: Path) -> list[str]:
    """Partial files, sidecars or temp files left in the model folders."""
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob(".*")
        if p.is_file() and ".model_sync" not in p.parts
    )
