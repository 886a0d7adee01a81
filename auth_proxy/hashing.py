"""argon2id hashes and checks, run in worker processes so that their memory is not the relay's.

argon2-cffi's defaults are RFC 9106's second recommended parameters (argon2id, t=3, 64 MiB,
p=4): every hash and every check allocates 64 MiB. In the proxy's own process that would be
its peak resident memory, more than the relay itself needs (~55 MB); lowering the cost would
weaken every stored hash instead. So the work runs in small worker processes
(`python -m auth_proxy.hashing`), started on first use and kept, one per caller at a time
(the proxy's two argon2 threads, services.py): the 64 MiB is allocated and freed there.

Each worker reads one JSON request a line on stdin and answers one line on stdout. When the
proxy ends, however it ends, the worker's stdin reaches its end and the worker exits: nothing
outlives the proxy. concurrent.futures' process pool was tried first: its workers hold their
task queue's write end (so they outlive a killed proxy) and its exit handler waited forever,
now and then, for a worker that was still starting.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import signal
import subprocess
import sys
from functools import cache
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
_idle: queue.SimpleQueue[subprocess.Popen] = queue.SimpleQueue()
PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])


def _start() -> subprocess.Popen:
    # `-m` puts the working directory first on sys.path: this checkout or site-packages.
    return subprocess.Popen(
        [sys.executable, "-m", "auth_proxy.hashing"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=PACKAGE_ROOT,
    )


def _ask(request: dict):
    for attempt in range(2):
        try:
            worker = _idle.get_nowait() if not attempt else _start()  # the retry: a fresh one
        except queue.Empty:
            worker = _start()
        assert worker.stdin is not None and worker.stdout is not None
        try:
            worker.stdin.write(json.dumps(request).encode() + b"\n")
            worker.stdin.flush()
            line = worker.stdout.readline()
        except OSError:
            line = b""
        if line:
            _idle.put(worker)
            return json.loads(line)["result"]
        # It died (killed for memory, say): a new one gets the request once more.
        worker.kill()
        worker.wait()
        if attempt:
            raise RuntimeError("the password hashing worker ended without an answer")
    raise AssertionError("unreachable")


def hash_password(password: str) -> str:
    return _ask({"op": "hash", "password": password})


def verify(password_hash: str, password: str) -> bool:
    """Whether `password` matches; False for a malformed hash too."""
    return bool(_ask({"op": "verify", "hash": password_hash, "password": password}))


@cache
def dummy_hash() -> str:
    """A hash to check against when the user name is wrong: it costs what a real check
    costs, so timing does not tell an unknown user from a wrong password."""
    return hash_password(secrets.token_hex(16))


def serve() -> None:
    # A Ctrl-C reaches the whole process group; the proxy decides, and this ends with its pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for line in sys.stdin.buffer:
        request = json.loads(line)
        if request["op"] == "hash":
            result: str | bool = _hasher.hash(request["password"])
        else:
            try:
                result = _hasher.verify(request["hash"], request["password"])
            except (VerificationError, InvalidHashError):
                result = False
        try:
            sys.stdout.write(json.dumps({"result": result}) + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            # the proxy stopped while this hash was computed (a stop at start, e.g. the gate
            # that stands in during a blocking model sync): nobody waits for the answer.
            # stdout goes to /dev/null so that Python's flush at exit does not fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return


if __name__ == "__main__":
    serve()
