"""The ComfyUI stand-in and the proxy (with the v2 job API) as real processes, so that the
fault tests can kill -9 either one and start it again on the same ports and data."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from auth_proxy.accounts import Accounts
from tests.support import free_port, python_env, stop_process, wait_until
from tests.support.proxy import PASSWORD


class Proc:
    def __init__(self, argv: list[str], env: dict, log: Path):
        self.argv, self.env, self.log_path = argv, env, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.log.close()


class JobsStack:
    def __init__(self, base: Path, delay: float = 0.0, history_delay: float = 0.0, **env: str):
        self.base = base
        self.comfy_port, self.proxy_port = free_port(), free_port()
        (base / "comfy").mkdir(parents=True, exist_ok=True)
        self.comfy = Proc(
            [
                sys.executable,
                "-m",
                "tests.support.fake_comfyui",
                "--port",
                str(self.comfy_port),
                "--output-directory",
                str(base / "comfy/output"),
                "--fake-delay",
                str(delay),
                "--fake-history-delay",
                str(history_delay),
            ],
            python_env(),
            base / "comfy.log",
        )
        # the proxy keeps its accounts beside the ledger, as `token create` there does
        accounts = Accounts(f"sqlite:///{base / 'jobs' / 'ledger.db'}", "admin", PASSWORD, base / "auth")
        self.token = accounts.create_token("tests")
        accounts.close()
        self.proxy = Proc(
            [sys.executable, "-m", "auth_proxy"],
            python_env(
                AUTH_PROXY_LISTEN=f"127.0.0.1:{self.proxy_port}",
                AUTH_PROXY_UPSTREAM=f"http://127.0.0.1:{self.comfy_port}",
                AUTH_PROXY_STATE_DIR=str(base / "auth"),
                COMFY_ADMIN_PASSWORD=PASSWORD,
                COMFY_JOBS_DIR=str(base / "jobs"),
                COMFY_JOB_LEASE_SECONDS="3",
                COMFY_JOBS_WORKER_ID="box-1",
                MODEL_SYNC_PROGRESS_FILE=str(base / "p.json"),
                **env,
            ),
            base / "proxy.log",
        )

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.proxy_port}{path}"

    def start_comfy(self) -> None:
        self.comfy.start()
        wait_until(
            lambda: (
                urllib.request.urlopen(f"http://127.0.0.1:{self.comfy_port}/queue", timeout=2).status == 200
            ),
            timeout=30,
            what="the ComfyUI stand-in",
        )

    def start_proxy(self) -> None:
        self.proxy.start()
        wait_until(
            lambda: urllib.request.urlopen(self.url("/healthz"), timeout=2).status == 200,
            timeout=30,
            what="the proxy",
        )

    def start(self) -> JobsStack:
        self.start_comfy()
        self.start_proxy()
        return self

    def stop(self) -> None:
        self.proxy.stop()
        self.comfy.stop()

    def request(self, method: str, path: str, body=None, headers: dict | None = None):
        return api_request(self.url(path), self.token, method, body, headers)

    def job(self, job_id: str) -> dict:
        return self.request("GET", f"/api/v2/jobs/{job_id}")[1]

    def comfy_queue(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.comfy_port}/queue", timeout=5) as r:
            return json.loads(r.read())

    def comfy_started(self) -> set[str]:
        """The prompts the stand-in began running (from /_test/starts)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.comfy_port}/_test/starts", timeout=5) as r:
            return set(json.loads(r.read()))

    def ledger_write(self, statement: str, *args) -> int:
        """Change the ledger behind the proxy's back (another worker's claim, say); rows changed."""
        import sqlite3

        with sqlite3.connect(self.base / "jobs/ledger.db", timeout=10) as c:
            return c.execute(statement, args).rowcount

    def ledger_attempts(self, job_id: str) -> list[dict]:
        """Read straight from the SQLite file, as an operator would."""
        import sqlite3

        with sqlite3.connect(self.base / "jobs/ledger.db") as c:
            c.row_factory = sqlite3.Row
            return [dict(r) for r in c.execute("SELECT * FROM attempts WHERE job_id=? ORDER BY n", (job_id,))]


def api_request(url: str, token: str, method: str, body=None, headers: dict | None = None):
    """(status, JSON body, headers) of one request with the token, an error status included."""
    req = urllib.request.Request(
        url,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null"), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null"), dict(e.headers)
