"""Static checks of what cannot be built here: the Dockerfile (hadolint, failing on any
warning, ignored rules justified in .hadolint.yaml), compose.yaml (`docker compose
config`), and the pins the image is built from."""

from __future__ import annotations

import json
import re
import subprocess

import yaml

from comfy_stack import variables
from tests.support import REPO, need_tool


def test_hadolint_passes_at_warning_threshold():
    hadolint = need_tool("hadolint")
    out = subprocess.run(
        [hadolint, "--config", str(REPO / ".hadolint.yaml"), str(REPO / "docker/Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    config = yaml.safe_load((REPO / ".hadolint.yaml").read_text())
    assert config["failure-threshold"] == "warning"
    text = (REPO / ".hadolint.yaml").read_text()
    for rule in config.get("ignored", []):
        assert re.search(rf"#.*{rule}.*\(", text), f"{rule} is ignored without a reason"


def compose(*args: str) -> str:
    exe = need_tool("docker-compose")
    out = subprocess.run(
        [exe, "-f", str(REPO / "compose.yaml"), *args], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_compose_config_for_both_profiles():
    gpu = yaml.safe_load(compose("--profile", "gpu", "config"))
    cpu = yaml.safe_load(compose("--profile", "cpu", "config"))
    assert set(gpu["services"]) == {"comfy"} and set(cpu["services"]) == {"comfy-cpu"}
    g = gpu["services"]["comfy"]
    devices = g["deploy"]["resources"]["reservations"]["devices"][0]
    assert devices["driver"] == "nvidia" and "gpu" in devices["capabilities"]
    for svc in (g, cpu["services"]["comfy-cpu"]):
        assert [p["target"] for p in svc["ports"]] == [8188], "only the proxy's port is published"
        # healthy means ready: the image's HEALTHCHECK on /readyz applies, compose keeps it
        assert svc["restart"] == "unless-stopped" and "healthcheck" not in svc
        assert re.search(r"^HEALTHCHECK .*\n.*/readyz", (REPO / "docker/Dockerfile").read_text(), re.M)
        assert [p.get("host_ip") for p in svc["ports"]] == ["0.0.0.0"]  # COMFY_BIND's default
        # every folder the image declares as a volume, and nothing else, is a named volume;
        # among them every folder that keeps state (one left in the container's layer is lost
        # on `down` and with every new image: the job ledger was, and every v2 job with it)
        declared = json.loads(
            re.search(r"^VOLUME (\[.*\])$", (REPO / "docker/Dockerfile").read_text(), re.M).group(1)
        )
        assert (
            {v["target"] for v in svc["volumes"]}
            == set(declared)
            == {
                "/data/models",
                "/data/input",
                "/data/output",
                "/data/user",
                "/data/auth",
                "/data/custom_nodes",
                "/data/python",
                "/data/jobs",
            }
            >= {str(variables.AUTH_PROXY_STATE_DIR.default), str(variables.COMFY_JOBS_DIR.default)}
        )
        assert all(v["type"] == "volume" for v in svc["volumes"])
        # each made in the image before the chown to uid 1000: Docker gives a new named volume
        # the image folder's owner, and root's for a folder the image lacks (the proxy could
        # not write its job ledger there)
        made = re.search(r"^RUN mkdir -p ((?:/data/\S+ )+)", (REPO / "docker/Dockerfile").read_text(), re.M)
        assert made and set(declared) <= set(made.group(1).split()), made and set(declared) - set(
            made.group(1).split()
        )
    assert cpu["services"]["comfy-cpu"]["environment"]["COMFYUI_MODE"] == "cpu"


def test_env_example_documents_every_variable_compose_reads():
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", (REPO / "compose.yaml").read_text()))
    documented = set(re.findall(r"^([A-Z0-9_]+)=", (REPO / ".env.example").read_text(), re.M))
    assert used <= documented, used - documented


def test_dockerfile_pins_and_essentials():
    text = (REPO / "docker/Dockerfile").read_text()
    lock = yaml.safe_load((REPO / "custom_nodes/lock.yaml").read_text())
    from docker import build

    # the image is labelled with the ComfyUI commit it carries (docker.build reads the lock)
    assert f"{build.COMFYUI_LABEL}={lock['comfyui']['commit']}" in build.command(
        build.parser().parse_args([])
    )
    for pack in lock["packs"]:
        assert re.fullmatch(r"[0-9a-f]{40}", pack["commit"]), pack["name"]
        assert pack["why"]
    names = {p["name"] for p in lock["packs"]}
    assert {
        "ComfyUI-WanVideoWrapper",
        "ComfyUI-VideoHelperSuite",
        "ComfyUI-KJNodes",
        "ComfyUI-GGUF",
        "ComfyUI-Manager",
    } <= names and any("Hunyuan3d" in n for n in names)
    for needle in (
        "tini",
        "HEALTHCHECK",
        "USER 1000",
        "org.opencontainers.image",
        "TORCH_CUDA_ARCH_LIST=\"8.6;8.9;9.0;10.0;12.0\"",
        "docker.check_nodes",
        "docker.check_image",
        "constraints.txt",
        "VOLUME",
        "libopengl0",
        # user-installed nodes (tests/runtime/test_user_packages.py shows the mechanism)
        "venv --system-site-packages /opt/venv",
        "COMFYUI_USER_PACKAGES=/data/python",
        "PYTHONNOUSERSITE=1",
        "PIP_CONSTRAINT=/opt/comfy-stack/custom_nodes/constraints.txt",
    ):
        assert needle in text, needle
    assert re.search(r"torch==\$\{TORCH_VERSION\}", text) and re.search(r"ARG TORCH_VERSION=\d", text)


def test_every_base_image_is_pinned_by_digest():
    """A tag can be re-pushed under us; a FROM that resolves to an ARG must carry a digest."""
    text = (REPO / "docker/Dockerfile").read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    stages = set(re.findall(r"^FROM .* AS (\S+)", text, re.M))
    bases = re.findall(r"^FROM (\S+)", text, re.M)
    assert bases
    for base in bases:
        ref = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), base)
        if ref in stages or ref.startswith("base-"):  # an earlier stage, not an image
            continue
        assert re.search(r"@sha256:[0-9a-f]{64}$", ref), f"{base} -> {ref} is not pinned by digest"


def test_the_image_carries_the_notice_its_licences_ask_for():
    """The Hunyuan3D 2.1 community licence asks every distribution to carry its notice."""
    notice = (REPO / "NOTICE").read_text()
    lock = yaml.safe_load((REPO / "custom_nodes/lock.yaml").read_text())
    for pack in lock["packs"]:
        assert pack["name"] in notice, pack["name"]
    assert "Tencent Hunyuan 3D 2.1 is licensed under the Tencent Hunyuan 3D 2.1 Community License" in notice
    assert re.search(
        r"^COPY .*\bNOTICE\b.* /opt/comfy-stack/", (REPO / "docker/Dockerfile").read_text(), re.M
    )


def test_every_package_of_the_distribution_is_copied_into_the_image():
    import tomllib

    includes = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"][
        "include"
    ]
    dockerfile = (REPO / "docker/Dockerfile").read_text()
    for pattern in includes:
        package = pattern.rstrip("*")
        assert re.search(rf"^COPY {package} /opt/comfy-stack/{package}$", dockerfile, re.M), package
