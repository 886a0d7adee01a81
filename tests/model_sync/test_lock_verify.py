"""Per-file locks (two holders, dead holders, heartbeats) and file verification."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import sys
import threading

import pytest
from oss2.utils import Crc64

from model_sync.errors import LockTimeoutError, VerificationError
from model_sync.lock import FileLock
from model_sync.verify import Expect, verify_file
from tests.support import python_env, wait_until
from tests.support.sync_cli import safetensors_bytes

HOLD = """
import sys, time
from pathlib import Path
from model_sync.lock import FileLock
with FileLock(Path(sys.argv[1]), "x", 0.4, 0.1, 5):
    Path(sys.argv[2]).write_text("held")
    time.sleep(60)
"""


def test_lock_of_a_killed_holder_is_taken_over(tmp_path):
    lock, flag = tmp_path / "x.lock", tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock), str(flag)], env=python_env())
    try:
        wait_until(flag.exists, timeout=20, what="the child to hold the lock")
        with pytest.raises(LockTimeoutError, match="waiting for x"):
            with FileLock(lock, "x", 0.4, 0.1, 0.6):  # heartbeats keep a live holder's lock
                pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        with FileLock(lock, "x", 0.4, 0.1, 5):
            assert lock.exists()
        assert not lock.exists()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_waiter_logs_what_it_waits_for(tmp_path, caplog):
    lock = tmp_path / "y.lock"
    order = []
    first = FileLock(lock, "vae/y.pt", 5, 0.1, 10)
    first.__enter__()

    def second():
        with FileLock(lock, "vae/y.pt", 5, 0.1, 10):
            order.append("second")

    with caplog.at_level(logging.INFO, logger="model_sync.lock"):
        t = threading.Thread(target=second)
        t.start()
        wait_until(lambda: "still waiting for vae/y.pt" in caplog.text, timeout=10, what="log line")
        order.append("first")
        first.__exit__(None, None, None)
        t.join(10)
    assert order == ["first", "second"]


def test_verify_checks_size_digests_and_safetensors(tmp_path):
    data = safetensors_bytes(1000, 5)
    good = tmp_path / "m.safetensors"
    good.write_bytes(data)
    crc = Crc64()
    crc.update(data)
    sha = hashlib.sha256(data).hexdigest()
    md5 = hashlib.md5(data).hexdigest()
    assert verify_file(good, Expect(len(data), str(crc.crc), md5, sha), "m") == sha
    with pytest.raises(VerificationError, match="CRC64"):
        verify_file(good, Expect(len(data), str(crc.crc + 1)), "m")
    with pytest.raises(VerificationError, match="MD5"):
        verify_file(good, Expect(len(data), md5="0" * 32), "m")
    with pytest.raises(VerificationError, match="size"):
        verify_file(good, Expect(len(data) + 1), "m")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[:-10])
    with pytest.raises(VerificationError, match="safetensors"):
        verify_file(cut, Expect(len(data) - 10), "cut")  # no digest published: header catches it
    long = tmp_path / "long.safetensors"
    long.write_bytes(data + b"junk")
    with pytest.raises(VerificationError, match="safetensors"):
        verify_file(long, Expect(len(data) + 4), "long")
