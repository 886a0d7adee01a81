"""The image tier (`make test-image`, run by .ci/run): the CPU image built with a real
Docker engine and started with `docker compose --profile cpu up -d`, then checked through
its published port. Not part of `make test` (it builds a 12 GB image); skipped with the
reason when Docker cannot run at all, a failure instead under CI (COMFY_STACK_STRICT_TESTS).
"""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.support import (
    REPO,
    compose_stack,
    docker_engine,
    free_port,
    need,
    need_tool,
    stop_process,
    wait_until,
)

TIER = os.environ.get("COMFY_STACK_IMAGE_TIER") == "1"
TAG = os.environ.get("COMFY_STACK_TIER_TAG", "comfy-stack:tier-cpu")
PASSWORD = "tier-password-4821"
BUCKET, PREFIX = "tier-models", "models"
RESULTS = REPO / "build" / "image-tier.json"
timings: dict[str, object] = {}


def pytest_collection_modifyitems(config, items):
    if TIER:
        return
    skip = pytest.mark.skip(reason="the image tier runs with `make test-image` (COMFY_STACK_IMAGE_TIER=1)")
    for item in items:
        if "tests/image/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    if timings:
        terminalreporter.write_sep("-", "image tier")
        for k, v in timings.items():
            terminalreporter.write_line(f"{k}: {v}")
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(timings, indent=1) + "\n")


@pytest.fixture(scope="session")
def engine():
    started = time.monotonic()
    eng, why = docker_engine.start_engine()
    need(eng is not None, f"Docker cannot run here: {why}")
    yield eng
    eng.stop()
    timings["tier seconds (all of it)"] = round(time.monotonic() - started)


@pytest.fixture(scope="session")
def inputs(engine):
    env = docker_engine.build_inputs(engine)
    timings["build inputs"] = "; ".join(engine.notes) or "the real ones"
    return env


@pytest.fixture(scope="session")
def image(engine, inputs, tmp_path_factory):
    """The CPU image, built as `make build-cpu` builds it; yields (tag, build log)."""
    log = tmp_path_factory.mktemp("build") / "build-cpu.log"
    took = docker_engine.build(engine, inputs, "cpu", TAG, log)
    timings["cpu build seconds (cold or warm: the layer cache decides)"] = round(took)
    timings["cpu image GB"] = round(docker_engine.image_size(engine, TAG) / 1e9, 2)
    return TAG, log.read_text()


@pytest.fixture(scope="session")
def bucket(engine, image):
    """A real S3 server (moto) on the Docker bridge's host address: the container's
    MODEL_SYNC_FROM, reached as host.docker.internal."""
    import subprocess

    from tests.support.s3_server import ACCESS_KEY, SECRET_KEY, _up

    # what `host-gateway` stands for, asked of Docker itself (the default bridge's IPAM
    # config names no gateway when dockerd runs without iptables)
    hosts = engine.run(
        "run",
        "--rm",
        "--add-host",
        "tier-host:host-gateway",
        "--entrypoint",
        "getent",
        image[0],
        "hosts",
        "tier-host",
    ).stdout.split()
    assert hosts, "Docker could not resolve host-gateway"
    gateway = hosts[0]
    port = free_port()
    proc = subprocess.Popen(
        [need_tool("moto_server"), "-H", gateway, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"http://{gateway}:{port}"
    try:
        wait_until(lambda: proc.poll() is None and _up(url), timeout=30, what="moto_server")
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )
        s3.create_bucket(Bucket=BUCKET)
        yield {
            "port": port,
            "client": s3,
            "env": {
                "MODEL_SYNC_FROM": f"s3://{BUCKET}/{PREFIX}",
                "AWS_ENDPOINT_URL": f"http://host.docker.internal:{port}",
                "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true",
            },
        }
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def stack(engine, image, bucket, tmp_path_factory):
    """compose.yaml with a test .env: CPU profile, the tier's image, a password, models
    from the bucket (a blocking sync, so each start's sync is in the log before ComfyUI's)."""
    import numpy as np
    from safetensors.numpy import save

    bucket["client"].put_object(
        Bucket=BUCKET,
        Key=f"{PREFIX}/checkpoints/tier-tiny.safetensors",
        Body=save({"weight": np.arange(64, dtype=np.float32)}),
    )
    port = free_port()
    env = {
        "COMPOSE_PROFILES": "cpu",
        "COMFY_CPU_IMAGE": image[0],
        "COMFY_ADMIN_PASSWORD": PASSWORD,
        "COMFY_PORT": str(port),
        "COMFY_BIND": "127.0.0.1",
        "MODEL_SYNC_MODE": "block",
        **bucket["env"],
    }
    override = {"services": {compose_stack.SERVICE: {"extra_hosts": ["host.docker.internal:host-gateway"]}}}
    s = compose_stack.make(
        need_tool("docker-compose"),
        tmp_path_factory.mktemp("compose"),
        "comfy-stack-tier",
        port,
        env,
        override,
    )
    s.run("down", "--volumes", check=False)  # a run killed earlier may have left its volumes
    try:
        s.run("--profile", "cpu", "up", "-d", timeout=600)
        try:
            timings["first start until healthy, seconds"] = round(s.wait_healthy(engine.docker))
        except TimeoutError:
            print(s.logs()[-12000:])
            raise
        yield s
    finally:
        s.run("down", "--volumes", timeout=300, check=False)
