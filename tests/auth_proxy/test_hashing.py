"""argon2 in worker processes (auth_proxy/hashing.py): a login's 64 MiB is not the proxy's,
a worker that dies is replaced, and no worker outlives the proxy, even one killed with -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from auth_proxy import hashing
from tests.support import REPO, peak_rss_mb
from tests.support.proxy import PASSWORD


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_worker_that_dies_is_replaced():
    stored = hashing.hash_password("a long password")
    mine = [
        pid
        for pid in children(os.getpid())
        if "auth_proxy.hashing" in Path(f"/proc/{pid}/cmdline").read_text()
    ]
    assert mine, "the hash was made in this process"
    for pid in mine:
        os.kill(pid, signal.SIGKILL)
    assert hashing.verify(stored, "a long password") and not hashing.verify(stored, "another password")
    assert not hashing.verify("not a hash", "a long password")


async def test_a_login_costs_the_proxy_no_argon2_memory_and_workers_end_with_it(spawn_proxy):
    proxy = spawn_proxy()
    before = peak_rss_mb(proxy.proc.pid)
    async with aiohttp.ClientSession() as s:
        for _ in range(3):
            async with s.post(f"{proxy.base}/login", json={"username": "admin", "password": PASSWORD}) as r:
                assert r.status == 200
    workers = children(proxy.proc.pid)
    assert workers, "no argon2 worker"
    assert max(peak_rss_mb(w) for w in workers) > 64, "the worker did not do the hashing"
    assert peak_rss_mb(proxy.proc.pid) - before < 32, "the proxy's own process allocated a hash's 64 MiB"
    proxy.proc.kill()
    proxy.proc.wait()
    deadline = time.monotonic() + 20
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(w) for w in workers), "an argon2 worker outlived the proxy"


def test_a_worker_whose_proxy_stopped_mid_hash_exits_quietly():
    """The proxy stopped (its pipe closed) while a hash was computed, as when the gate that
    stands in during a blocking model sync stops: no traceback in the container's log."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "auth_proxy.hashing"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdin.write(b'{"op": "hash", "password": "a-long-enough-password"}\n')
    proc.stdin.flush()
    proc.stdout.close()  # the proxy is gone before the answer
    proc.stdin.close()
    err = proc.stderr.read()
    assert proc.wait(60) == 0 and b"Traceback" not in err, err
