"""docker/image-lock.txt and the script that writes it: every package of the image besides
the torch stack at one exact version, used by every install step of the Dockerfile."""

from __future__ import annotations

import re

import tomllib
import yaml

from tests.support import REPO

LOCK = REPO / "docker/image-lock.txt"


def _lock_image():
    from docker import lock_image

    return lock_image


_name = _lock_image().requirement_name  # PEP 503 names, as the build scripts compare them


def _pins() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", line)
        assert m, f"not an exact pin: {line!r}"
        pins[_name(m.group(1))] = m.group(2)
    return pins


def test_lock_pins_everything_but_the_torch_stack_including_our_own_dependencies():
    pins = _pins()
    assert len(pins) > 100
    assert not [
        n
        for n in pins
        if re.match(r"^(torch|torchvision|torchaudio|xformers|sageattention|triton|nvidia-.*)$", n)
    ]
    ours = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert {_name(d) for d in ours} <= set(pins)
    lock = yaml.safe_load((REPO / "custom_nodes/lock.yaml").read_text())
    for pack in lock["packs"]:
        for req in pack.get("requirements", []):
            name, _, version = req.partition("==")
            assert pins.get(_name(name)) == version, req  # the lock's extra pins are honoured


def test_every_python_install_of_the_runtime_uses_the_lock_and_ends_with_pip_check():
    runtime = (REPO / "docker/Dockerfile").read_text().split("AS runtime", 1)[1]
    steps = [s for s in re.split(r"\n(?=[A-Z]+ )", runtime) if s.startswith("RUN ")]
    installs = [s for s in steps if "pip install" in s]
    for step in installs:
        for command in re.split(r"&&", step):
            if (
                "pip install" not in command
                or "torch==" in command
                or "xformers==" in command
                or "sageattention==" in command
                or "--no-deps" in command
            ):
                continue  # the torch stack comes from its own index; the built wheel has no deps
            assert "image-lock.txt" in command, command.strip()
    assert "pip check" in installs[-1]


def test_requirements_gathers_comfyui_packs_lock_extras_and_ours(tmp_path):
    comfy = tmp_path / "ComfyUI"
    (comfy / "custom_nodes/ComfyUI-KJNodes").mkdir(parents=True)
    (comfy / "main.py").write_text("")
    (comfy / "requirements.txt").write_text("torch\ntorchsde\ntorchvision\n# comment\nav>=14.2.0\n")
    (comfy / "custom_nodes/ComfyUI-KJNodes/requirements.txt").write_text("torch>=2.1\ncolor-matcher\n")
    reqs = _lock_image().requirements(comfy)
    assert "torchsde" in reqs and "av>=14.2.0" in reqs and "color-matcher" in reqs
    assert not [r for r in reqs if _name(r) in ("torch", "torchvision")]
    assert "rembg==2.0.67" in reqs  # an extra requirement from custom_nodes/lock.yaml
    assert any(r.startswith("aiohttp") for r in reqs)  # our own


def test_torch_pins_follow_the_dockerfile():
    pins = _lock_image().torch_pins((REPO / "docker/Dockerfile").read_text())
    text = (REPO / "docker/Dockerfile").read_text()
    version = re.search(r"ARG TORCH_VERSION=(\S+)", text).group(1)
    sage = re.search(r"ARG SAGEATTENTION_VERSION=(\S+)", text).group(1)
    assert f"torch=={version}" in pins and f"sageattention=={sage}" in pins and len(pins) == 5
    assert f"torch=={version}" in LOCK.read_text().splitlines()[1]


def test_the_rasterizer_is_built_with_the_image_numpy():
    text = (REPO / "docker/Dockerfile").read_text()
    stage = text.split("AS extensions-cuda", 1)[1].split("\nFROM ", 1)[0]
    assert "docker/image-lock.txt" in stage and "build-extensions.sh" in stage
    script = (REPO / "docker/build-extensions.sh").read_text()
    assert re.search(r'pip install -c "\$here/image-lock.txt" numpy', script) and _pins()["numpy"]
