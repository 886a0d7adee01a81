"""Mode choice, configuration errors, extra_model_paths.yaml and workflow installation."""

from __future__ import annotations

import argparse
import logging
import os
import stat
import sys
from pathlib import Path

import pytest
import yaml

from comfyctl import config, model_paths, modes, workflows_install
from comfyctl.errors import ConfigError
from tests.support import REPO


def fake_smi(tmp_path: Path, output: str, code: int = 0) -> str:
    exe = tmp_path / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\ncat <<'EOF'\n{output}\nEOF\nexit {code}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(exe)


@pytest.mark.parametrize(
    "output,code,flags",
    [
        ("NVIDIA H100 80GB HBM3, 81559", 0, []),
        ("NVIDIA A10, 23028", 0, []),
        ("Tesla T4, 15360", 0, []),
        ("NVIDIA GeForce RTX 3060 Laptop GPU, 6144", 0, ["--lowvram"]),
        ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.", 9, ["--cpu"]),
    ],
)
def test_auto_mode_reads_the_gpu(tmp_path, output, code, flags):
    gpus = modes.detect_gpus(fake_smi(tmp_path, output, code))
    choice = modes.choose_memory_flags("auto", gpus)
    assert choice.flags == flags
    assert choice.why  # the log says why


@pytest.mark.parametrize(
    "driver,cuda,warned",
    [
        ("535.161.07", "12.8", "compatibility"),  # ACK's default driver for 1.28+ clusters
        ("550.90.07", "12.8", "compatibility"),  # ACS's default for A10 and L20
        ("470.256.02", "12.8", "no GPU"),  # a CUDA 11 driver: no CUDA 12 runtime at all
        ("570.133.20", "12.8", None),
        ("535.161.07", None, None),  # not in the CUDA image: nothing to compare with
        ("535.161.07", "11.8.0", None),  # a runtime the table does not know
    ],
)
def test_driver_older_than_the_image_cuda_is_named(tmp_path, driver, cuda, warned):
    gpus = modes.detect_gpus(fake_smi(tmp_path, f"NVIDIA A10, 23028, {driver}"))
    assert gpus == [modes.Gpu("NVIDIA A10", 23028, driver)]
    warning = modes.driver_warning(gpus, cuda)
    assert (warning is None) == (warned is None)
    if warned:
        assert "ack.aliyun.com/nvidia-driver-version" in warning and "R570" in warning
        # what the user gets with that driver: minor-version compatibility, or no GPU
        assert ("minor-version compatibility" in warning) == (warned == "compatibility")
        assert ("will not use the GPU" in warning) == (warned == "no GPU")


def test_serve_logs_the_driver_warning(checkout, tmp_path, caplog):
    s = config.load(ns(), {"COMFYUI_DIR": str(checkout), "CUDA_VERSION": "12.8.1"})
    smi = fake_smi(tmp_path, "NVIDIA L20, 46068, 550.90.07")
    flags = modes.comfyui_flags("gpu", Path(sys.executable), (), nvidia_smi=smi, cuda_version=s.cuda_version)
    assert "--cpu" not in flags and "older than CUDA 12.8.1 needs" in caplog.text


def test_auto_without_nvidia_smi_is_cpu(tmp_path):
    assert modes.detect_gpus(str(tmp_path / "absent")) == []
    assert modes.choose_memory_flags("auto", []).flags == ["--cpu"]


@pytest.mark.parametrize(
    "mode,flags", [("gpu", []), ("lowvram", ["--lowvram"]), ("novram", ["--novram"]), ("cpu", ["--cpu"])]
)
def test_fixed_modes(mode, flags):
    assert modes.choose_memory_flags(mode, [modes.Gpu("x", 4000)]).flags == flags


def python_with(tmp_path: Path, *modules: str) -> Path:
    """An interpreter that finds exactly `modules` besides the standard library (empty stand-ins)."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    for m in modules:
        (site / f"{m}.py").write_text("")
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\nPYTHONPATH={site} exec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    return python


@pytest.mark.parametrize(
    "setting,have,flags,said",
    [
        # auto is ComfyUI's own choice whatever is installed: sageattention alone changes nothing
        ("auto", (), [], "PyTorch SDPA (xformers is not installed)"),
        ("auto", ("xformers",), [], "xformers (installed)"),
        ("auto", ("xformers", "sageattention"), [], "COMFYUI_ATTENTION=sage uses it"),
        ("sdpa", ("xformers", "sageattention"), ["--use-pytorch-cross-attention"], "PyTorch SDPA"),
        ("xformers", ("xformers",), [], "xformers"),
        ("sage", ("sageattention",), ["--use-sage-attention"], "SageAttention"),
    ],
)
def test_attention_is_comfyuis_own_choice_unless_set(tmp_path, setting, have, flags, said):
    choice = modes.choose_attention_flags(setting, python_with(tmp_path, *have), on_cpu=False)
    assert choice.flags == flags and said in choice.why


@pytest.mark.parametrize("setting,package", [("sage", "sageattention"), ("xformers", "xformers")])
def test_an_explicit_attention_without_its_package_stops_the_start(tmp_path, setting, package):
    with pytest.raises(ConfigError) as err:
        modes.comfyui_flags("gpu", python_with(tmp_path), (), setting)
    assert f"COMFYUI_ATTENTION={setting}" in str(err.value) and f"{package} is not installed" in str(
        err.value
    )
    assert "COMFYUI_ATTENTION=auto" in str(err.value)  # what to set instead


def test_attention_is_ignored_on_the_cpu_with_a_note(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="comfyctl.modes")
    flags = modes.comfyui_flags("cpu", python_with(tmp_path), ("--fast",), "sage")
    assert flags[0] == "--cpu" and flags[-1] == "--fast" and "--use-sage-attention" not in flags
    assert "COMFYUI_ATTENTION=sage is ignored" in caplog.text
    flags = modes.comfyui_flags("gpu", python_with(tmp_path), ("--cpu",), "sdpa")
    assert "--use-pytorch-cross-attention" not in flags


def test_the_attention_choice_is_logged_at_start(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="comfyctl.modes")
    flags = modes.comfyui_flags("gpu", python_with(tmp_path, "sageattention"), (), "sage")
    assert "--use-sage-attention" in flags
    assert "ComfyUI attention: --use-sage-attention (COMFYUI_ATTENTION=sage: SageAttention)" in caplog.text


def test_attention_flags_in_extra_args_are_the_users_choice_under_auto(checkout, tmp_path):
    python = python_with(tmp_path, "xformers")
    choice = modes.choose_attention_flags("auto", python, False, ("--use-sage-attention",))
    assert choice.flags == [] and "COMFYUI_EXTRA_ARGS sets --use-sage-attention" in choice.why
    env = {"COMFYUI_DIR": str(checkout), "COMFY_DATA_DIR": str(tmp_path / "d")}
    with pytest.raises(ConfigError, match="keep one of them"):
        config.load(ns(), {**env, "COMFYUI_ATTENTION": "sdpa", "COMFYUI_EXTRA_ARGS": "--use-sage-attention"})
    assert config.load(ns(attention="sage"), env).attention == "sage"


def ns(**kw):
    return argparse.Namespace(**kw)


@pytest.mark.parametrize(
    "env,needle",
    [
        ({"COMFYUI_MODE": "turbo"}, "COMFYUI_MODE"),
        ({"COMFYUI_ATTENTION": "flash"}, "COMFYUI_ATTENTION"),
        ({"MODEL_SYNC_MODE": "later"}, "MODEL_SYNC_MODE"),
        ({"COMFYUI_PORT": "8188"}, "both use port"),
        ({"COMFYUI_PORT": "99999"}, "COMFYUI_PORT"),
        ({"AUTH_PROXY_LISTEN": "8188"}, "HOST:PORT"),
        ({"COMFYUI_EXTRA_ARGS": "--listen 0.0.0.0"}, "--listen"),
        ({"COMFYUI_EXTRA_ARGS": "--foo 'unclosed"}, "COMFYUI_EXTRA_ARGS"),
        ({"COMFYUI_PYTHON": "/nonexistent/python"}, "COMFYUI_PYTHON"),
        ({"MODEL_SYNC_FROM": "ftp://x/y"}, "MODEL_SYNC_FROM"),
        ({"MODEL_PROFILES": "a", "MODEL_MANIFEST": "/nonexistent.yaml"}, "MODEL_MANIFEST"),
    ],
)
def test_bad_configuration_fails_with_the_setting_named(checkout, tmp_path, env, needle):
    with pytest.raises(ConfigError) as err:
        config.load(ns(), {"COMFYUI_DIR": str(checkout), "COMFY_DATA_DIR": str(tmp_path / "d"), **env})
    assert needle in str(err.value)


def test_without_a_checkout_serve_makes_one_in_the_data_folder_and_a_bad_one_is_named(tmp_path):
    s = config.load(ns(), {"COMFY_DATA_DIR": str(tmp_path / "d")})
    assert s.bootstrap and s.comfyui_dir == tmp_path / "d" / "comfyui" / "ComfyUI"
    assert s.comfyui_python == tmp_path / "d" / "comfyui" / "venv" / "bin" / "python"
    with pytest.raises(ConfigError, match="no main.py"):
        config.load(ns(), {"COMFYUI_DIR": str(tmp_path)})


def test_flag_beats_environment_beats_default(checkout, tmp_path):
    manifest = tmp_path / "models.yaml"
    manifest.write_text("version: 1\nfiles: []\n")
    env = {
        "COMFYUI_DIR": str(checkout),
        "COMFYUI_MODE": "lowvram",
        "MODEL_PROFILES": "a, b",
        "MODEL_MANIFEST": str(manifest),
    }
    s = config.load(ns(mode="cpu"), env)
    assert s.mode == "cpu" and s.profiles == ("a", "b") and s.sync_mode == "block"
    assert config.load(ns(), env).mode == "lowvram"
    assert config.load(ns(), {"COMFYUI_DIR": str(checkout)}).mode == "auto"


def test_extra_model_paths_matches_comfyui_format(tmp_path):
    models = tmp_path / "models"
    dest = model_paths.write(models, tmp_path / "run" / "extra_model_paths.yaml")
    data = yaml.safe_load(dest.read_text())
    (section,) = data.values()
    assert section.pop("base_path") == str(models) and section.pop("is_default") is True
    # ComfyUI joins each newline-separated entry to base_path (utils/extra_config.py)
    resolved = {k: [os.path.join(str(models), p) for p in v.split("\n") if p] for k, v in section.items()}
    for key in (
        "checkpoints",
        "loras",
        "vae",
        "text_encoders",
        "diffusion_models",
        "clip_vision",
        "controlnet",
        "upscale_models",
        "embeddings",
        "vae_approx",
        "unet_gguf",
    ):
        assert str(models / key) in resolved[key] and (models / key).is_dir(), key
    assert (
        str(models / "clip") in resolved["text_encoders"]
        and str(models / "text_encoders") in resolved["clip"]
    )
    assert str(models / "unet") in resolved["diffusion_models"]
    assert "custom_nodes" not in section


def test_extra_model_paths_puts_the_data_custom_nodes_folder_first(tmp_path):
    """Loaded the way ComfyUI loads it (utils/extra_config.py joins each entry to base_path
    with os.path.join and inserts is_default entries first), the data volume's
    custom_nodes folder comes before ComfyUI's own: ComfyUI-Manager installs into the
    first one."""
    nodes = tmp_path / "data" / "custom_nodes"
    dest = model_paths.write(tmp_path / "models", tmp_path / "run" / "extra_model_paths.yaml", nodes)
    (section,) = yaml.safe_load(dest.read_text()).values()
    folders = {"custom_nodes": ["/opt/ComfyUI/custom_nodes"]}
    for key, value in section.items():
        if key in ("base_path", "is_default"):
            continue
        for entry in value.split("\n"):
            folders.setdefault(key, []).insert(0, os.path.join(section["base_path"], entry))
    assert folders["custom_nodes"][0] == str(nodes)


def test_workflow_install_never_overwrites_edits(tmp_path):
    bundled, dest = tmp_path / "bundled", tmp_path / "user" / "workflows"
    bundled.mkdir()
    (bundled / "a.json").write_text('{"v": 1}')
    (bundled / "b.json").write_text('{"v": 1}')
    r = workflows_install.install(bundled, dest)
    assert sorted(r.installed) == ["a.json", "b.json"]
    (dest / "b.json").write_text('{"v": "mine"}')  # the user edits b
    (bundled / "a.json").write_text('{"v": 2}')  # a new release changes both
    (bundled / "b.json").write_text('{"v": 2}')
    r = workflows_install.install(bundled, dest)
    assert r.updated == ["a.json"] and r.kept_user_edits == ["b.json"]
    assert (dest / "a.json").read_text() == '{"v": 2}' and (dest / "b.json").read_text() == '{"v": "mine"}'
    (dest / "a.json").unlink()  # a deleted copy comes back
    assert workflows_install.install(bundled, dest).installed == ["a.json"]


def test_doctor_names_what_is_wrong(checkout, tmp_path):
    import socket

    from comfyctl import doctor

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        env = {
            "COMFYUI_DIR": str(checkout),
            "COMFYUI_PYTHON": "/bin/false",
            "COMFY_DATA_DIR": str(tmp_path / "d"),
            "COMFYUI_PORT": str(busy.getsockname()[1]),
            "MODEL_SYNC_FROM": "oss://b/models",
        }
        results = {c.name: c for c in doctor.checks(ns(), env)}
    finally:
        busy.close()
    assert (
        not results["ComfyUI's interpreter"].ok and "requirements" in results["ComfyUI's interpreter"].detail
    )
    assert not results["ComfyUI port"].ok and "in use" in results["ComfyUI port"].detail
    assert not results["OSS credentials"].ok and "OSS_ENDPOINT" in results["OSS credentials"].detail
    assert not results["admin password"].ok
    assert results["data directory"].ok
    bad = doctor.checks(ns(), {"COMFYUI_DIR": str(tmp_path / "nothing-here")})
    assert len(bad) == 1 and "COMFYUI_DIR" in bad[0].detail
    unset = {c.name: c for c in doctor.checks(ns(), {"COMFY_DATA_DIR": str(tmp_path / "d")})}
    assert "COMFYUI_DIR is unset" in unset["ComfyUI's interpreter"].detail and "data directory" in unset


def test_doctor_shows_the_attention_a_start_would_choose(checkout, tmp_path, monkeypatch):
    from comfyctl import doctor

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_smi(bin_dir, "NVIDIA L20, 46068, 570.133.20")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    python = python_with(tmp_path, "xformers")
    env = {"COMFYUI_DIR": str(checkout), "COMFYUI_PYTHON": str(python), "COMFY_DATA_DIR": str(tmp_path / "d")}
    auto = {c.name: c for c in doctor.checks(ns(), env)}["attention"]
    assert auto.ok and "ComfyUI's own choice, xformers" in auto.detail
    sage = {c.name: c for c in doctor.checks(ns(), {**env, "COMFYUI_ATTENTION": "sage"})}["attention"]
    assert not sage.ok and "sageattention is not installed" in sage.detail
    cpu = {"COMFYUI_MODE": "cpu", "COMFYUI_ATTENTION": "sage"}
    on_cpu = {c.name: c for c in doctor.checks(ns(), {**env, **cpu})}["attention"]
    assert on_cpu.ok and "ignored" in on_cpu.detail


def test_only_comfyui_runs_offline(checkout, tmp_path):
    """Packs must not download weights at run time, but the sync, which runs before
    supervisord with the container's environment, must reach the hub: HF_HUB_OFFLINE goes
    into ComfyUI's program only, never into the image's or the pod's environment."""
    from comfyctl import supervisor

    s = config.load(ns(), {"COMFYUI_DIR": str(checkout), "COMFY_DATA_DIR": str(tmp_path / "d")})
    text = supervisor.render(s, [], tmp_path, {"AUTH_PROXY_LISTEN": "127.0.0.1:8188"})
    comfy, proxy = text.split("[program:comfyui]")[1].split("[program:auth_proxy]")
    assert 'HF_HUB_OFFLINE="1"' in comfy and "HF_HUB_OFFLINE" not in proxy
    for path in ("docker/Dockerfile", "deploy/k8s/base/deployment.yaml", "compose.yaml", ".env.example"):
        assert "HF_HUB_OFFLINE" not in (REPO / path).read_text(), path


def test_logprefix_dies_the_way_its_program_died():
    """supervisord must see "terminated by SIGTERM" for a program stopped with SIGTERM, not a
    made-up exit status (the forwarding handler once turned it into 241)."""
    import signal
    import subprocess

    script = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    out = subprocess.run(
        [sys.executable, "-m", "comfyctl.logprefix", "p", "--", sys.executable, "-c", script],
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == -signal.SIGTERM
    ok = subprocess.run(
        [sys.executable, "-m", "comfyctl.logprefix", "p", "--", sys.executable, "-c", "print(1)"],
        capture_output=True,
        timeout=60,
    )
    assert ok.returncode == 0 and ok.stdout == b"[p] 1\n"


def test_comfyui_writes_nothing_beside_its_code(checkout, tmp_path):
    """In the image ComfyUI's own folder is read-only to uid 1000: its database and temp
    folder (ComfyUI's defaults put both there) go to the data directory."""
    import shlex

    from comfyctl import supervisor

    s = config.load(ns(), {"COMFYUI_DIR": str(checkout), "COMFY_DATA_DIR": str(tmp_path / "d")})
    text = supervisor.render(s, [], tmp_path / "d" / "run", {"AUTH_PROXY_LISTEN": "127.0.0.1:8188"})
    command = shlex.split(text.split("[program:comfyui]")[1].split("command=", 1)[1].splitlines()[0])
    flags = dict(zip(command, command[1:], strict=False))
    for flag in ("--user-directory", "--input-directory", "--output-directory", "--temp-directory"):
        assert flags[flag].startswith(str(tmp_path / "d")), flag
    assert flags["--database-url"] == f"sqlite:///{tmp_path / 'd' / 'user' / 'comfyui.db'}"


def test_the_sync_is_told_comfyuis_interpreter(checkout, tmp_path):
    """The sync looks for the workflow templates in ComfyUI's interpreter: one named with
    --comfyui-python (not in the environment) must reach the background sync too."""
    from comfyctl import serve

    python = tmp_path / "python"
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    manifest = tmp_path / "models.yaml"
    manifest.write_text("version: 1\nfiles: []\n")
    env = {
        "COMFYUI_DIR": str(checkout),
        "COMFY_DATA_DIR": str(tmp_path / "d"),
        "MODEL_PROFILES": "a",
        "MODEL_MANIFEST": str(manifest),
        "MODEL_SYNC_MODE": "background",
    }
    s = config.load(ns(comfyui_python=str(python)), env)
    _, text = serve.prepare(s)
    sync = text.split("[program:model_sync]")[1]
    assert f'COMFYUI_PYTHON="{python}"' in sync


def test_the_blocking_sync_gets_the_interpreter_in_its_environment():
    from comfyctl import sync_job

    check = "import os, sys; sys.exit(0 if os.environ.get('COMFYUI_PYTHON') == '/x/python' else 3)"
    assert sync_job.run([[sys.executable, "-c", check]], {"COMFYUI_PYTHON": "/x/python"}) == 0
