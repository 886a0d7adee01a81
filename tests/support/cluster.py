"""A cluster on loopback, as real processes: gateways (the proxy with the v2 API and no
worker), workers (`python -m comfy_jobs worker`, each beside its own ComfyUI stand-in), one
PostgreSQL ledger, and a real S3 server for the assets, so that a test can kill -9 any of
them and start it again on the same port and data."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

from auth_proxy.accounts import Accounts
from tests.support import free_port, python_env, wait_until
from tests.support.jobs_stack import Proc, api_request
from tests.support.proxy import PASSWORD

BUCKET = "comfy-assets"


class Node:
    """One process of the cluster (and, for a worker, its ComfyUI stand-in)."""

    def __init__(self, name: str, proc: Proc, port: int, comfy: Proc | None = None, comfy_port: int = 0):
        self.name, self.proc, self.port, self.comfy, self.comfy_port = name, proc, port, comfy, comfy_port

    @property
    def alive(self) -> bool:
        return self.proc.proc is not None and self.proc.proc.poll() is None


class Cluster:
    """`s3`: assets go through that S3 server, as in a cluster; None: every process shares
    one assets directory instead (as Compose's scale profile shares a volume)."""

    def __init__(self, base: Path, db_url: str, s3=None, lease_s: float = 3.0):
        self.base, self.db_url, self.s3, self.lease_s = base, db_url, s3, lease_s
        base.mkdir(parents=True, exist_ok=True)
        self.gateways: list[Node] = []
        self.workers: list[Node] = []
        self.common = {
            "COMFY_JOBS_DATABASE_URL": db_url,
            "COMFY_JOB_LEASE_SECONDS": str(lease_s),
            "COMFY_QUEUE_LIMIT": "0",
        }
        if s3 is not None:
            s3.client().create_bucket(Bucket=BUCKET)
            self.common |= {"COMFY_OUTPUTS_TO": f"s3://{BUCKET}/assets", **s3.env()}
        # the gateways keep their tokens in the cluster's database, as `token create` there does
        accounts = Accounts(db_url, "admin", PASSWORD, base / "auth")
        self.token = accounts.create_token("tests")
        accounts.close()

    def jobs_dir(self, name: str) -> str:
        return str(self.base / (name if self.s3 is not None else "shared-assets"))

    # --- gateways ------------------------------------------------------------------------
    def add_gateway(self, **env: str) -> Node:
        n, port = len(self.gateways), free_port()
        proc = Proc(
            [sys.executable, "-m", "auth_proxy"],
            python_env(
                AUTH_PROXY_LISTEN=f"127.0.0.1:{port}",
                AUTH_PROXY_UPSTREAM=f"http://127.0.0.1:{free_port()}",
                AUTH_PROXY_STATE_DIR=str(self.base / "auth"),
                COMFY_ADMIN_PASSWORD=PASSWORD,
                COMFY_JOBS_DIR=self.jobs_dir(f"gateway{n}"),
                COMFY_JOBS_WORKER="0",
                COMFY_JOBS_WORKER_ID=f"gateway-{n}",
                MODEL_SYNC_PROGRESS_FILE=str(self.base / "none.json"),
                **self.common,
                **env,
            ),
            self.base / f"gateway{n}.log",
        )
        node = Node(f"gateway-{n}", proc, port)
        self.gateways.append(node)
        self.start(node)
        return node

    # --- workers -------------------------------------------------------------------------
    def _stand_in_comfyui(self, name: str, port: int, delay: float) -> Proc:
        """The ComfyUI stand-in beside worker `name` (not started)."""
        cmd = [
            sys.executable,
            "-m",
            "tests.support.fake_comfyui",
            "--port",
            str(port),
            "--output-directory",
            str(self.base / f"{name}-comfy/output"),
            "--fake-delay",
            str(delay),
        ]
        return Proc(cmd, python_env(), self.base / f"{name}-comfy.log")

    def add_worker(self, delay: float, models_dir: Path | None = None, **env: str) -> Node:
        n, comfy_port = len(self.workers), free_port()
        name = f"worker-{n}"
        comfy = self._stand_in_comfyui(name, comfy_port, delay)
        extra = {"COMFY_WORKER_MODELS_DIR": str(models_dir)} if models_dir else {}
        proc = Proc(
            [sys.executable, "-m", "comfy_jobs", "worker"],
            python_env(
                COMFY_JOBS_DIR=self.jobs_dir(name),
                COMFY_JOBS_WORKER_ID=name,
                COMFY_WORKER_COMFYUI_URL=f"http://127.0.0.1:{comfy_port}",
                **self.common,
                **extra,
                **env,
            ),
            self.base / f"{name}.log",
        )
        node = Node(name, proc, 0, comfy, comfy_port)
        self.workers.append(node)
        self.start(node)
        return node

    def add_worker_beside(self, comfy_url: str, **env: str) -> Node:
        """A worker for a ComfyUI started elsewhere (a real one, in the opt-in tier)."""
        name = f"worker-{len(self.workers)}"
        proc = Proc(
            [sys.executable, "-m", "comfy_jobs", "worker"],
            python_env(
                COMFY_JOBS_DIR=self.jobs_dir(name),
                COMFY_JOBS_WORKER_ID=name,
                COMFY_WORKER_COMFYUI_URL=comfy_url,
                **self.common,
                **env,
            ),
            self.base / f"{name}.log",
        )
        node = Node(name, proc, 0)
        self.workers.append(node)
        self.start(node)
        return node

    def add_worker_proxy(self, delay: float = 0.0, **env: str) -> Node:
        """A worker pod as the image runs it: ComfyUI and the proxy, which runs the worker
        in-process and answers the gateways' relayed UI requests (COMFY_WORKER_URL)."""
        n, port, comfy_port = len(self.workers), free_port(), free_port()
        name = f"worker-{n}"
        comfy = self._stand_in_comfyui(name, comfy_port, delay)
        proc = Proc(
            [sys.executable, "-m", "auth_proxy"],
            python_env(
                AUTH_PROXY_LISTEN=f"127.0.0.1:{port}",
                AUTH_PROXY_UPSTREAM=f"http://127.0.0.1:{comfy_port}",
                AUTH_PROXY_STATE_DIR=str(self.base / f"{name}-auth"),
                COMFY_ADMIN_PASSWORD=PASSWORD,
                COMFY_JOBS_DIR=self.jobs_dir(name),
                COMFY_JOBS_WORKER="1",
                COMFY_JOBS_WORKER_ID=name,
                COMFY_WORKER_URL=f"http://127.0.0.1:{port}",
                MODEL_SYNC_PROGRESS_FILE=str(self.base / "none.json"),
                **self.common,
                **env,
            ),
            self.base / f"{name}.log",
        )
        node = Node(name, proc, port, comfy, comfy_port)
        self.workers.append(node)
        self.start(node)
        return node

    def start(self, node: Node) -> None:
        if node.comfy is not None and (node.comfy.proc is None or node.comfy.proc.poll() is not None):
            node.comfy.start()
            wait_until(
                lambda: self._get(f"http://127.0.0.1:{node.comfy_port}/queue") is not None,
                timeout=30,
                what=f"{node.name}'s ComfyUI stand-in",
            )
        node.proc.start()
        if node.port:
            wait_until(lambda: self._get(self.url(node, "/healthz")) is not None, timeout=30, what=node.name)
        else:
            wait_until(lambda: node.name in self.ledger_workers(), timeout=30, what=f"{node.name} to report")

    def stop(self) -> None:
        for node in self.gateways + self.workers:
            node.proc.stop()
            if node.comfy is not None:
                node.comfy.stop()

    # --- looking at it -------------------------------------------------------------------
    def url(self, node: Node, path: str = "") -> str:
        return f"http://127.0.0.1:{node.port}{path}"

    def request(self, gateway: Node, method: str, path: str, body=None, headers: dict | None = None):
        return api_request(self.url(gateway, path), self.token, method, body, headers)

    def job(self, gateway: Node, job_id: str) -> dict:
        return self.request(gateway, "GET", f"/api/v2/jobs/{job_id}")[1]

    def submit(self, gateway: Node, workflow: dict) -> str:
        status, body, _ = self.request(gateway, "POST", "/api/v2/jobs", {"workflow": workflow})
        assert status == 201, body
        return body["id"]

    @staticmethod
    def _get(url: str, headers: dict | None = None):
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as r:
                return json.loads(r.read() or b"null")
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def sql(self, query: str, *args) -> list[tuple]:
        """Read the ledger straight from PostgreSQL, as an operator would."""
        import psycopg

        with psycopg.connect(self.db_url) as c:
            return c.execute(query, args).fetchall()

    def ledger_workers(self) -> set[str]:
        return {r[0] for r in self.sql("SELECT id FROM workers")}

    def prompts_run(self, node: Node) -> dict:
        """prompt_id -> when the worker's ComfyUI stand-in began running it."""
        return self._get(f"http://127.0.0.1:{node.comfy_port}/_test/starts") or {}
