"""Local S3 servers for tests and benchmarks: moto's server mode and SeaweedFS (`weed mini`).

Both listen on 127.0.0.1 only and are stopped (and their data removed) by `stop()`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import free_port, need_tool, stop_process, wait_until

ACCESS_KEY, SECRET_KEY = "testing-access-key", "testing-secret-key"


@dataclass
class S3Server:
    url: str
    proc: subprocess.Popen
    workdir: Path
    log: Path = field(default=None)  # type: ignore[assignment]

    def client(self, endpoint: str | None = None, checksums: bool = True):
        """A boto3 client; `checksums=False` uploads objects without a stored CRC32."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint or self.url,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 2},
                request_checksum_calculation="when_supported" if checksums else "when_required",
            ),
        )

    def env(self, endpoint: str | None = None) -> dict[str, str]:
        """Environment for a model_sync child process talking to this server."""
        return {
            "AWS_ENDPOINT_URL": endpoint or self.url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def stop(self) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _up(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(url, timeout=1)
    except urllib.error.HTTPError:
        return True  # any HTTP answer (403 for an anonymous list) means it is serving
    return True


def start_moto() -> S3Server:
    exe = need_tool("moto_server")
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="moto-"))
    log = workdir / "moto.log"
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)], stdout=open(log, "wb"), stderr=subprocess.STDOUT
    )
    server = S3Server(f"http://127.0.0.1:{port}", proc, workdir, log)
    try:
        wait_until(lambda: proc.poll() is None and _up(server.url), timeout=30, what="moto_server")
    except TimeoutError:
        server.stop()
        raise
    return server


def start_seaweedfs(buckets: list[str]) -> S3Server:
    """SeaweedFS all-in-one with an S3 gateway; its ranged reads are much faster than moto's."""
    exe = need_tool("weed")
    workdir = Path(tempfile.mkdtemp(prefix="seaweed-"))
    s3_port = free_port()
    config = workdir / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "bench",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List"],
                    }
                ]
            }
        )
    )
    # Every port explicit: the defaults are fixed numbers and the gRPC ones "http port +
    # 10000", either of which can collide with other servers on a shared machine.
    names = [
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "volume.port.public",
        "filer.port",
        "filer.port.grpc",
        "filer.port.public",
        "admin.port",
        "admin.port.grpc",
        "webdav.port",
        "s3.port.grpc",
        "debug.port",
    ]
    ports = {n: free_port() for n in names}
    args = [
        exe,
        "mini",
        f"-dir={workdir / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        f"-s3.port={s3_port}",
        f"-s3.config={config}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-admin.ui=false",
        "-master.volumeSizeLimitMB=1024",
    ] + [f"-{k}={v}" for k, v in ports.items()]
    (workdir / "data").mkdir()
    log = workdir / "weed.log"
    proc = subprocess.Popen(args, stdout=open(log, "wb"), stderr=subprocess.STDOUT, cwd=workdir)
    server = S3Server(f"http://127.0.0.1:{s3_port}", proc, workdir, log)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited: {log.read_text()[-2000:]}")
        client = server.client()
        for b in buckets:
            try:
                client.head_bucket(Bucket=b)
            except Exception:  # noqa: BLE001 - not yet serving or bucket not yet made
                client.create_bucket(Bucket=b)
        return True

    try:
        wait_until(ready, timeout=90, interval=0.5, what="SeaweedFS S3 gateway")
    except (TimeoutError, RuntimeError):
        server.stop()
        raise
    return server
