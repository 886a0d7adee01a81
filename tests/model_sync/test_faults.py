"""Faults between model_sync and the store: retries, resume after kill -9, two processes.

Every test runs the real CLI against moto (S3) or the OSS adapter in front of it, through a
fault-injecting relay on loopback.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading

import pytest

from tests.support import stop_process, wait_until
from tests.support.sync_cli import (
    PART,
    cli_env,
    digests,
    leftovers,
    oss_env,
    run_cli,
    safetensors_bytes,
    spawn_cli,
    tree,
    upload,
)


class FinalNameWatch:
    """Polls the final paths while a sync runs: whenever one exists it must be complete."""

    def __init__(self, root, files: dict[str, bytes]):
        self.root, self.want = root, digests(files)
        self.bad: list[str] = []
        self.checks = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()

    def _run(self):
        while not self._stop.wait(0.003):
            for rel, digest in self.want.items():
                try:
                    data = (self.root / rel).read_bytes()
                except FileNotFoundError:
                    continue
                self.checks += 1
                if hashlib.sha256(data).hexdigest() != digest:
                    self.bad.append(f"{rel}: {len(data)} bytes, wrong content")


def store_env(kind, s3, oss, relay_for, **extra):
    if kind == "s3":
        relay = relay_for(s3.url)
        return relay, cli_env(**s3.env(relay.url), **extra)
    relay = relay_for(oss.url)
    return relay, oss_env(relay.url, **extra)


@pytest.mark.parametrize("kind", ["s3", "oss"])
def test_faults_still_give_a_byte_identical_tree(kind, s3, oss, bucket, relay_for, tmp_path):
    files = {
        "checkpoints/m.safetensors": safetensors_bytes(60_000, 3),  # ~240 KB, 4 parts
        "vae/v.pt": os.urandom(150_000),
        "loras/l.pt": os.urandom(30_000),
    }
    upload(s3, bucket, files)
    relay, env = store_env(kind, s3, oss, relay_for, MODEL_SYNC_RETRIES="8", MODEL_SYNC_TIMEOUT="1")
    relay.stall_seconds = 2.5
    faults = ["503", "reset", "503", "truncate", "corrupt", "stall", "503", "reset", "corrupt"]
    relay.inject(*faults)
    with FinalNameWatch(tmp_path, files) as watch:
        res = run_cli(["mirror", f"{kind}://{bucket}/models", str(tmp_path)], env)
    assert res.rc == 0, res.stderr[-4000:]
    assert relay.faults_done == faults
    assert tree(tmp_path) == digests(files)
    assert watch.bad == [] and watch.checks > 0
    assert leftovers(tmp_path) == []
    assert "retrying" in res.stderr


@pytest.mark.parametrize("kind", ["s3", "oss"])
def test_a_stalled_body_times_out_and_is_retried(kind, s3, oss, bucket, relay_for, tmp_path):
    files = {"vae/v.pt": os.urandom(50_000)}
    upload(s3, bucket, files)
    relay, env = store_env(kind, s3, oss, relay_for, MODEL_SYNC_TIMEOUT="1")
    relay.stall_seconds = 2.5
    relay.inject("stall")
    res = run_cli(["mirror", f"{kind}://{bucket}/models", str(tmp_path)], env)
    assert res.rc == 0, res.stderr[-3000:]
    assert relay.faults_done == ["stall"]
    assert "timed out" in res.stderr.lower() or "timeout" in res.stderr.lower(), res.stderr[-3000:]
    assert tree(tmp_path) == digests(files)


def test_https_source_resumes_after_a_reset(s3, bucket, relay_for, tmp_path):
    data = os.urandom(400_000)
    s3.client().put_object(Bucket=bucket, Key="pub/v.pt", Body=data, ACL="public-read")
    relay = relay_for(s3.url)
    relay.inject("reset")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        f"version: 1\nfiles:\n  - folder: vae\n    path: v.pt\n    source: {relay.url}/{bucket}/pub/v.pt\n"
    )
    res = run_cli(["sync", "--manifest", str(manifest), "--models-dir", str(tmp_path / "m")], cli_env())
    assert res.rc == 0, res.stderr[-3000:]
    assert (tmp_path / "m/vae/v.pt").read_bytes() == data
    # Half the body came before the reset; a restart from zero would make it 1.5x in all.
    assert len(data) <= relay.body_bytes < len(data) * 1.5
    assert relay.object_gets == 2


@pytest.mark.parametrize("kind", ["s3", "oss"])
def test_kill_9_then_rerun_refetches_at_most_one_part(kind, s3, oss, bucket, relay_for, tmp_path):
    size = 2 * 1024 * 1024  # 32 parts of 64 KiB
    files = {"diffusion_models/big.pt": os.urandom(size)}
    upload(s3, bucket, files)
    relay, env = store_env(kind, s3, oss, relay_for, MODEL_SYNC_RANGE_THREADS="1")
    relay.rate = 700_000  # ~3 s for the whole file
    models = tmp_path / "models"
    args = ["mirror", f"{kind}://{bucket}/models", str(models)]
    proc = spawn_cli(args, env, tmp_path / "first.log")
    try:

        def midway() -> bool:
            # the progress file (what the proxy's starting page shows) names the file in flight
            progress = json.loads((models / ".model_sync/progress.json").read_text())
            return (
                relay.body_bytes >= size // 3
                and progress["state"] == "running"
                and [c["path"] for c in progress["current"]] == ["diffusion_models/big.pt"]
            )

        wait_until(midway, timeout=30, what="a third of the file, shown in the progress file")
        # Stop the body between chunks and let the client take in what the sockets hold:
        # every byte the relay counted has then reached the client before the kill.
        relay.pause()
        wait_until(relay.drained, timeout=10, what="the client to read all the relay sent")
        before = relay.body_bytes  # read now: once resumed, the relay may write to the dead socket
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        relay.resume()
        stop_process(proc)
    assert before < size, "the download finished before the kill"
    assert not (models / "diffusion_models/big.pt").exists()
    assert list((models / "diffusion_models").glob(".big.pt.msync-part*"))
    relay.rate = None
    relay.reset_counters()
    res = run_cli(args, env)
    assert res.rc == 0, res.stderr[-3000:]
    assert tree(models) == digests(files)
    # What the rerun took in beyond what the first run had not got: one part may have been
    # in flight at the kill (the client had received all the relay counted before it, and
    # the rerun's own count excludes the dead connection's late write). The 16 KiB: on a
    # loaded machine the OSS path (oss2's resumable download, its own checkpoints) was seen
    # taking one more relay chunk; the cause is not pinned down.
    refetched = res.summary["bytes_transferred"] - (size - before)
    assert refetched <= PART + 16 * 1024, (
        f"re-fetched {refetched} bytes of what was there:\n{res.stderr[-3000:]}"
    )
    # (the killed connection's last relay write may land after the counters were reset)
    assert 0 <= relay.body_bytes - res.summary["bytes_transferred"] <= 16 * 1024
    assert leftovers(models) == []


def test_two_processes_share_one_directory(s3, bucket, relay_for, tmp_path):
    files = {f"loras/f{i}.pt": os.urandom(200_000) for i in range(4)}
    upload(s3, bucket, files)
    relay = relay_for(s3.url)
    relay.rate = 500_000  # 0.4 s a file: the other process must wait
    env = cli_env(**s3.env(relay.url), MODEL_SYNC_LOCK_LOG_EVERY="0.1", MODEL_SYNC_FILE_WORKERS="2")
    args = ["mirror", f"s3://{bucket}/models", str(tmp_path / "m")]
    log_paths = [tmp_path / f"p{i}.log" for i in range(2)]
    with FinalNameWatch(tmp_path / "m", files) as watch:
        # Bodies are held until one process waits for a file the other is fetching: however
        # slowly each starts, their syncs overlap.
        relay.pause()
        procs = [spawn_cli(args, env, log) for log in log_paths]
        try:
            wait_until(
                lambda: any("still waiting for loras/" in log.read_text() for log in log_paths),
                timeout=30,
                what="one process to wait for the other's lock",
            )
            relay.resume()
            for p in procs:
                assert p.wait(60) == 0
        finally:
            relay.resume()
            for p in procs:
                stop_process(p)
    assert tree(tmp_path / "m") == digests(files)
    assert watch.bad == []
    logs = [log.read_text() for log in log_paths]
    outs = [(tmp_path / f"p{i}.out").read_text() for i in range(2)]
    sent = sum(json.loads(o.strip().splitlines()[-1])["summary"]["bytes_transferred"] for o in outs)
    assert sent == sum(map(len, files.values())) == relay.body_bytes  # each file fetched once
    assert any("still waiting for loras/" in log for log in logs)
