"""The image build without building it: which stages each builder runs for each variant,
the build inputs `python -m docker.build` stages and passes, and the shared mechanisms the
Dockerfile and `comfyctl serve` use (comfyctl.sources, runtime_install, manager_config).
The image tier (tests/image, `make test-image`) builds and runs the image itself."""

from __future__ import annotations

import configparser
import io
import re
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from comfyctl import manager_config, runtime_install, sources
from docker import build
from tests.support import REPO

DOCKERFILE = (REPO / "docker/Dockerfile").read_text()
CUDA_REFS = ("nvidia/", "cuda")


def stages(build_args: dict[str, str]) -> dict[str, tuple[str, set[str]]]:
    """stage -> (what its FROM resolves to, stages its COPY --from lines use), in file order."""
    args = dict(re.findall(r"^ARG (\w+)=(\S*)", DOCKERFILE.split("\nFROM ", 1)[0], re.M)) | build_args
    expand = lambda s: re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), s)  # noqa: E731
    out: dict[str, tuple[str, set[str]]] = {}
    for block in re.split(r"\n(?=FROM )", DOCKERFILE)[1:]:
        head = re.match(r"FROM (\S+) AS (\S+)", block)
        out[head.group(2)] = (expand(head.group(1)), set(re.findall(r"COPY --from=(\S+)", block)))
    return out


def needed(graph: dict, target: str) -> set[str]:
    """The stages BuildKit builds for target: what it starts FROM and copies from, recursively."""
    base, copies = graph[target]
    deps = ({base} if base in graph else set()) | copies
    return {target}.union(*(needed(graph, d) for d in deps))


def images(graph: dict, names) -> set[str]:
    return {graph[n][0] for n in names if graph[n][0] not in graph}


def cpu_args() -> dict[str, str]:
    cmd = build.command(build.parser().parse_args(["--variant", "cpu"]))
    return dict(
        a.split("=", 1) for a in cmd[cmd.index("--build-arg") :] if "=" in a and not a.startswith("-")
    )


def test_the_cpu_variant_uses_no_cuda_image_with_either_builder():
    plain = stages({"VARIANT": "cpu"})
    # BuildKit: only the stages the runtime needs, even with no CUDA settings at all
    buildkit = images(plain, needed(plain, "runtime"))
    assert buildkit and not [i for i in buildkit if i.startswith(CUDA_REFS)], buildkit
    # the legacy builder runs every stage: with the arguments docker.build and compose pass
    for build_args in (
        cpu_args(),
        yaml.safe_load((REPO / "compose.yaml").read_text())["services"]["comfy-cpu"]["build"]["args"],
    ):
        legacy = images(stages({k: str(v) for k, v in build_args.items()}), plain)
        assert len(legacy) == 1 and not [i for i in legacy if i.startswith(CUDA_REFS)], (build_args, legacy)
    # the CUDA variant uses NVIDIA's devel image for the extensions only: its runtime is the
    # same Ubuntu as the CPU variant's (torch brings CUDA's libraries)
    cuda = stages({"VARIANT": "cuda"})
    assert {i.split(":")[0] for i in images(cuda, needed(cuda, "runtime"))} == {"ubuntu", "nvidia/cuda"}
    assert "extensions-cuda" in needed(cuda, "runtime")
    assert cuda["base-cuda"][0] == cuda["base-cpu"][0] and cuda["extensions-cuda"][0].startswith(
        "nvidia/cuda:"
    )


def test_the_cuda_runtime_carries_the_container_toolkits_settings():
    """What NVIDIA's base image would have given a user: the settings the container toolkit
    reads (all GPUs, compute, and a driver new enough for torch's CUDA 12 build)."""
    block = re.search(r"^FROM \S+ AS base-cuda\n(.*?)\n# ---", DOCKERFILE, re.M | re.S).group(1)
    assert "NVIDIA_VISIBLE_DEVICES=all" in block
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in block
    assert 'NVIDIA_REQUIRE_CUDA="cuda>=12.0"' in block
    # the start compares the driver with it (the build check holds it to torch.version.cuda)
    assert "CUDA_VERSION=12.8" in block


def test_build_stages_the_optional_inputs_and_clears_stale_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "STAGED_SOURCES", tmp_path / "ctx/sources")
    monkeypatch.setattr(build, "STAGED_CA", tmp_path / "ctx/extra-ca.crt")
    src = tmp_path / "src"
    src.mkdir()
    (src / "ComfyUI-abc.tar.gz").write_bytes(b"x")
    (src / "SOURCES.tsv").write_text("#\n")
    (src / "notes.txt").write_text("not a source")
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    build.stage(src, ca)
    assert sorted(p.name for p in (tmp_path / "ctx/sources").iterdir()) == [
        "ComfyUI-abc.tar.gz",
        "SOURCES.tsv",
    ]
    assert (tmp_path / "ctx/extra-ca.crt").read_text() == ca.read_text()
    build.stage(None, None)
    assert not (tmp_path / "ctx/sources").exists() and not (tmp_path / "ctx/extra-ca.crt").exists()
    ca.write_text("not a certificate")
    with pytest.raises(SystemExit, match="no PEM certificate"):
        build.stage(None, ca)


def test_every_outside_source_becomes_a_build_argument_and_nothing_else_changes():
    default = build.command(build.parser().parse_args([]))
    assert not [a for a in default if a.startswith(("PIP_INDEX_URL=", "TORCH_INDEX_URL=", "GIT_MIRROR="))]
    pointed = build.command(
        build.parser().parse_args(
            [
                "--ubuntu-image",
                "registry.example/ubuntu:24.04",
                "--cuda-devel",
                "registry.example/cuda:12.8-devel",
                "--apt-mirror",
                "http://mirrors.example/ubuntu/",
                "--pip-index-url",
                "https://mirrors.example/pypi/simple",
                "--torch-index-url",
                "https://mirrors.example/torch",
                "--git-mirror",
                "https://git.example/https://github.com/",
            ]
        )
    )
    for arg in (
        "UBUNTU_IMAGE=registry.example/ubuntu:24.04",
        "CUDA_DEVEL=registry.example/cuda:12.8-devel",
        "APT_MIRROR=http://mirrors.example/ubuntu/",
        "PIP_INDEX_URL=https://mirrors.example/pypi/simple",
        "TORCH_INDEX_URL=https://mirrors.example/torch",
        "GIT_MIRROR=https://git.example/https://github.com/",
    ):
        assert arg in pointed
        assert re.search(rf"^ARG {arg.split('=')[0]}=", DOCKERFILE, re.M), arg  # and the Dockerfile reads it
    # the image keeps none of them: no ENV names a build input
    env_lines = " ".join(re.findall(r"^ENV .*(?:\n    .*)*", DOCKERFILE, re.M))
    assert not re.search(r"\b(TORCH_INDEX|PIP_INDEX_URL|GIT_MIRROR|APT_MIRROR)", env_lines)


def test_the_cuda_architectures_are_the_dockerfiles_unless_a_build_names_fewer(monkeypatch):
    """A release gets kernels for every GPU the Dockerfile lists; CI and `make test-image-cuda`
    pass one architecture (TORCH_CUDA_ARCH_LIST, as make exports it) to compile in less time."""
    release = re.search(r'^ARG TORCH_CUDA_ARCH_LIST="([^"]+)"', DOCKERFILE, re.M).group(1)
    assert release.split(";") == ["8.6", "8.9", "9.0", "10.0", "12.0"]
    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST", raising=False)
    assert not [a for a in build.command(build.parser().parse_args([])) if "TORCH_CUDA_ARCH_LIST" in a]
    one = build.command(build.parser().parse_args(["--cuda-arch-list", "8.6"]))
    assert "TORCH_CUDA_ARCH_LIST=8.6" in one
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")
    assert "TORCH_CUDA_ARCH_LIST=9.0" in build.command(build.parser().parse_args([]))
    assert "TORCH_CUDA_ARCH_LIST" in (REPO / "Makefile").read_text().split("BUILD_VARS :=")[1].splitlines()[0]


def tarball(folder, name: str, commit: str, files: dict[str, str], top: str | None = None):
    path = folder / f"{name}-{commit}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for rel, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top or path.name[:-7]}/{rel}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_lock(tmp_path, comfy_repo: str, comfy_commit: str, packs=()) -> object:
    lock = tmp_path / "lock.yaml"
    lock.write_text(
        yaml.safe_dump(
            {
                "comfyui": {"repo": comfy_repo, "commit": comfy_commit},
                "packs": [{"name": n, "repo": r, "commit": c} for n, r, c in packs],
            }
        )
    )
    return lock


def test_sources_from_tarballs_laid_out_as_the_image_has_them(tmp_path):
    c1, c2 = "1" * 40, "2" * 40
    folder = tmp_path / "tarballs"
    folder.mkdir()
    tarball(folder, "ComfyUI", c1, {"main.py": "", "custom_nodes/example.py": ""})
    tarball(folder, "PackA", c2, {"__init__.py": "A"})
    (folder / "SOURCES.tsv").write_text(f"# name repo commit tarball absent\nPackA\tr\t{c2}\tt\tbig.bin\n")
    lock = write_lock(
        tmp_path, "https://github.com/o/ComfyUI", c1, [("PackA", "https://github.com/o/PackA", c2)]
    )
    report = sources.fetch(lock, tmp_path / "out", folder)
    assert (tmp_path / "out/ComfyUI/main.py").exists()
    assert (tmp_path / "out/ComfyUI/custom_nodes/PackA/__init__.py").read_text() == "A"
    assert "lacks big.bin" in report[1]
    with pytest.raises(sources.SourceError, match="already exists"):
        sources.fetch(lock, tmp_path / "out", folder)


def test_a_tarball_must_hold_one_folder_named_for_the_pinned_commit(tmp_path):
    c1 = "3" * 40
    folder = tmp_path / "tarballs"
    folder.mkdir()
    tarball(folder, "ComfyUI", c1, {"main.py": ""}, top="ComfyUI-master")
    with pytest.raises(sources.SourceError, match="expected one top folder"):
        sources.fetch(write_lock(tmp_path, "r", c1), tmp_path / "out", folder)


def git(cwd, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_sources_from_git_through_a_mirror_with_the_commit_checked(tmp_path):
    # a "mirror" of github.com/o/ComfyUI on disk; the lock names the github.com URL
    mirror = tmp_path / "mirror"
    repo = mirror / "o" / "ComfyUI"
    repo.mkdir(parents=True)
    git(repo, "init", "-q")
    (repo / "main.py").write_text("print('hi')\n")
    git(repo, "add", "main.py")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    git(repo, "config", "uploadpack.allowAnySHA1InWant", "true")
    commit = git(repo, "rev-parse", "HEAD")
    lock = write_lock(tmp_path, "https://github.com/o/ComfyUI", commit)
    report = sources.fetch(lock, tmp_path / "out", None, f"file://{mirror}/")
    assert (tmp_path / "out/ComfyUI/main.py").exists() and not (tmp_path / "out/ComfyUI/.git").exists()
    assert "through file://" in report[0]
    # without the mirror the URL cannot be fetched here, and the error says what to set
    with pytest.raises(sources.SourceError, match="set a git mirror"):
        sources.fetch(write_lock(tmp_path, f"file://{tmp_path}/nothing", commit), tmp_path / "out2")
    # a commit the repository does not have is refused, never replaced by what it has
    with pytest.raises(sources.SourceError):
        sources.fetch(
            write_lock(tmp_path, "https://github.com/o/ComfyUI", "4" * 40),
            tmp_path / "out3",
            None,
            f"file://{mirror}/",
        )


def test_the_gui_opencv_is_read_as_the_headless_one(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("opencv-python>=4.8\nopencv_contrib_python\ntorch\nopencv-python-headless\n")
    assert runtime_install.requirement_lines(req) == [
        "opencv-python-headless>=4.8",
        "opencv-contrib-python-headless",
        "opencv-python-headless",
    ]
    lock = (REPO / "docker/image-lock.txt").read_text()
    assert not re.search(r"^opencv-python==", lock, re.M) and re.search(
        r"^opencv-python-headless==", lock, re.M
    )


@pytest.mark.parametrize("variant", ["cuda", "cpu"])
def test_the_cuda_variant_gets_sageattention_from_the_python_index_without_dependencies(
    tmp_path, monkeypatch, variant
):
    """SageAttention 1.x is on PyPI, not on the PyTorch index; it declares no dependencies,
    and --no-deps keeps any later one from bringing another torch. The CPU variant gets
    neither xformers nor SageAttention."""
    calls = []
    monkeypatch.setattr(runtime_install, "pip", lambda python, *args: calls.append(args))
    versions = runtime_install.torch_versions((REPO / "docker/Dockerfile").read_text())
    lock = REPO / "docker/image-lock.txt"
    runtime_install.install_torch(Path("python"), variant, versions, None, lock)
    sage = f"sageattention=={versions['sageattention']}"
    named = [a for call in calls for a in call]
    if variant == "cpu":
        assert not [a for a in named if a.startswith(("sageattention", "xformers"))]
        return
    torch_index, from_pypi, deps = calls
    assert "--index-url" in torch_index and sage not in torch_index and "xformers" in " ".join(torch_index)
    assert from_pypi == ("install", "--no-deps", sage)
    assert deps[:3] == ("install", "-c", str(lock)) and sage in deps


def test_packs_cannot_replace_sageattention(tmp_path):
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\nprintf 'requests==2.32.5\\nsageattention==1.0.6\\ntorch==2.8.0\\n'\n")
    python.chmod(0o755)
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("numpy<2\n")
    runtime_install.freeze_torch(python, constraints)
    assert constraints.read_text().splitlines() == ["numpy<2", "sageattention==1.0.6", "torch==2.8.0"]


@pytest.mark.parametrize(
    "answers, setting, expected",
    [
        (False, "auto", "offline"),
        (True, "auto", "public"),
        (True, "offline", "offline"),
        (False, "private", "private"),
    ],
)
def test_manager_network_mode(tmp_path, answers, setting, expected):
    probed = []
    mode = manager_config.write(tmp_path, setting, probe=lambda url: probed.append(url) or answers)
    cfg = configparser.ConfigParser()
    cfg.read(tmp_path / "default/ComfyUI-Manager/config.ini")
    assert mode == expected and cfg["default"]["network_mode"] == expected
    assert cfg["default"]["security_level"] == "normal"
    assert probed == ([manager_config.DEFAULT_CHANNEL] if setting == "auto" else [])


def test_manager_config_keeps_what_the_user_set_and_probes_their_channel(tmp_path):
    path = tmp_path / "default/ComfyUI-Manager/config.ini"
    path.parent.mkdir(parents=True)
    path.write_text(
        "[default]\nsecurity_level = weak\nchannel_url = https://mirror.example/manager\n"
        "network_mode = public\nuse_uv = True\n"
    )
    probed = []
    assert manager_config.write(tmp_path, "auto", probe=lambda url: probed.append(url) or False) == "offline"
    cfg = configparser.ConfigParser()
    cfg.read(path)
    assert dict(cfg["default"]) == {
        "security_level": "weak",
        "channel_url": "https://mirror.example/manager",
        "network_mode": "offline",
        "use_uv": "True",
    }
    assert probed == ["https://mirror.example/manager"]


def test_the_build_context_leaves_out_history_environments_and_data():
    ignored = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in (".git", ".venv", "data", ".env", "build/*"):
        assert path in ignored, path
    # but the two staged build inputs go in
    assert "!build/sources" in ignored and "!build/extra-ca.crt" in ignored
    assert "COPY custom_nodes/lock.yaml build/source[s] /src/sources/" in DOCKERFILE
    assert DOCKERFILE.count("build/extra-ca.cr[t]") == 3  # every stage that fetches trusts the company CA


def test_what_changes_with_every_commit_comes_last():
    """A build argument in use invalidates the cache of every later step: the revision
    (a new value at every commit) must not come before the expensive ones."""
    runtime = DOCKERFILE.split("AS runtime", 1)[1]
    assert runtime.index("ARG REVISION") > runtime.index("docker.check_nodes") > runtime.index("requirements")
    assert re.search(r"\nARG REVISION\nLABEL [^\n]*(\n {6}[^\n]*)*\n*$", runtime), runtime[-600:]


def test_serve_without_a_checkout_makes_comfyui_once_and_again_when_a_pin_moves(tmp_path, monkeypatch):
    """comfyctl.bootstrap with its two heavy steps (fetching, pip) replaced by recorders; the
    real ones run in the image tier (tests/image/test_serve_fresh.py)."""
    import argparse
    import sys

    from comfyctl import bootstrap, config

    calls = []

    def fake_fetch(lock, dest, tarballs, mirror):
        calls.append(("fetch", tarballs, mirror))
        (dest / "ComfyUI").mkdir(parents=True)
        (dest / "ComfyUI" / "main.py").write_text("")

    monkeypatch.setattr(bootstrap.sources, "fetch", fake_fetch)
    monkeypatch.setattr(
        bootstrap.sources, "apply_patches", lambda patches, comfy: calls.append(("patch", patches))
    )
    monkeypatch.setattr(
        bootstrap.runtime_install, "install_torch", lambda *a: calls.append(("torch", a[1], a[3]))
    )
    monkeypatch.setattr(bootstrap.runtime_install, "install_requirements", lambda *a: calls.append(("reqs",)))
    monkeypatch.setattr(bootstrap, "variant", lambda: "cpu")
    monkeypatch.setattr(bootstrap, "base_python", lambda configured: sys.executable)  # any will do here
    env = {
        "COMFY_DATA_DIR": str(tmp_path / "data"),
        "SOURCES_DIR": str(tmp_path / "src"),
        "TORCH_INDEX_URL": "https://mirror.example/torch",
    }
    s = config.load(argparse.Namespace(), env)
    bootstrap.ensure(s)
    assert calls == [
        ("fetch", tmp_path / "src", None),
        ("patch", bootstrap.PATCHES),  # the packs patched as in the image
        ("torch", "cpu", "https://mirror.example/torch"),
        ("reqs",),
    ]
    assert (s.comfyui_dir / "main.py").exists() and s.comfyui_python.exists()
    calls.clear()
    bootstrap.ensure(s)  # same pins: reused
    assert calls == []
    monkeypatch.setattr(bootstrap, "wanted", lambda kind, index: {"moved": True})
    bootstrap.ensure(s)  # a pin moved: made again
    assert [c[0] for c in calls] == ["fetch", "patch", "torch", "reqs"]


def test_serve_without_a_checkout_needs_python_3_12(tmp_path):
    from comfyctl import bootstrap
    from comfyctl.errors import ConfigError

    older = tmp_path / "python"
    older.write_text("#!/bin/sh\necho 3.11\n")
    older.chmod(0o755)
    with pytest.raises(
        ConfigError,
        match=r"Python 3\.11; docker/image-lock.txt is for Python 3\.12 \(set COMFY_BASE_PYTHON\)",
    ):
        bootstrap.base_python(older)


PATCHES = REPO / "docker" / "patches"


def _pinned_packs(tmp_path, names):
    """ComfyUI/custom_nodes/<name> for each pack at its pinned commit, from the source
    tarballs beside the checkout (the image tier's air-gapped input)."""
    lock = {
        p["name"]: p["commit"] for p in yaml.safe_load((REPO / "custom_nodes/lock.yaml").read_text())["packs"]
    }
    comfy = tmp_path / "ComfyUI"
    (comfy / "custom_nodes").mkdir(parents=True)
    for name in names:
        archive = REPO.parent / "shared" / "sources" / f"{name}-{lock[name]}.tar.gz"
        if not archive.is_file():
            pytest.skip(f"no source tarball of {name} at {lock[name][:12]} beside the checkout")
        sources.extract(archive, sources.Source(name, "", lock[name], REPO), comfy / "custom_nodes" / name)
    return comfy


def test_every_pack_patch_applies_to_its_pinned_commit_and_says_why(tmp_path):
    patches = sorted(PATCHES.glob("*/*.patch"))
    for patch in patches:
        assert not patch.read_text().startswith("---"), f"{patch} must say at its top why it exists"
    comfy = _pinned_packs(tmp_path, {p.parent.name for p in patches})
    assert sources.apply_patches(PATCHES, comfy) == [f"{p.parent.name}: {p.name}" for p in patches]


def test_managers_installed_packages_read_in_process_are_what_pip_lists(tmp_path):
    """The patched ComfyUI-Manager reads the installed distributions without running pip;
    what it finds is what `pip list` prints for the same interpreter."""
    import importlib.util
    import sys

    comfy = _pinned_packs(tmp_path, {p.parent.name for p in PATCHES.glob("*/*.patch")} | {"ComfyUI-Manager"})
    sources.apply_patches(PATCHES, comfy)
    spec = importlib.util.spec_from_file_location(
        "patched_manager_util", comfy / "custom_nodes" / "ComfyUI-Manager" / "glob" / "manager_util.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True, check=True
    ).stdout
    expected = {
        line.split("==")[0].lower().replace("-", "_"): line.split("==")[1]
        for line in listed.splitlines()
        if "==" in line
    }
    found = module.get_installed_packages(renew=True)
    assert {k: found.get(k) for k in expected} == expected
    source = (comfy / "custom_nodes" / "ComfyUI-Manager" / "glob" / "security_check.py").read_text()
    assert '"pip", "freeze"' not in source and '"pip", "show"' not in source


def _unbound_names(source: str) -> set[str]:
    """Names some function reads that nothing binds: not its own, not an enclosing function's,
    not the module's, not a builtin (each would be a NameError when that function runs)."""
    import builtins
    import symtable

    top = symtable.symtable(source, "module", "exec")
    bound = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    bound |= set(dir(builtins)) | {"__file__", "__name__"}
    unbound: set[str] = set()

    def walk(table: symtable.SymbolTable) -> None:
        for child in table.get_children():
            if child.get_type() == "function":
                unbound.update(
                    s.get_name() for s in child.get_symbols() if s.is_global() and s.get_name() not in bound
                )
            walk(child)

    walk(top)
    return unbound


def test_packs_patched_to_import_at_first_use_keep_every_name_their_functions_read(tmp_path):
    """The Hunyuan3D and WanVideoWrapper patches move imports from the top of nodes.py into
    the node functions: nodes.py still imports without them (no name read at module level),
    and no function reads a name that nothing binds any more (a NameError when the node
    runs). The build checks in the image that each moved import resolves (check_image)."""
    from docker import check_image

    patched = ["ComfyUI-Hunyuan3d-2-1", "ComfyUI-WanVideoWrapper"]
    original = _pinned_packs(tmp_path / "original", patched)
    comfy = _pinned_packs(tmp_path / "patched", {p.parent.name for p in PATCHES.glob("*/*.patch")})
    sources.apply_patches(PATCHES, comfy)
    for pack in patched:
        before = (original / "custom_nodes" / pack / "nodes.py").read_text()
        after = (comfy / "custom_nodes" / pack / "nodes.py").read_text()
        assert after != before
        assert _unbound_names(after) <= _unbound_names(before), pack
        moved = check_image.moved_imports(next((PATCHES / pack).glob("*.patch")).read_text())
        assert moved, pack
        # each moved import was at the top of nodes.py before, and is not any more
        top_level = [line for line in after.splitlines() if re.match(r"(from|import) ", line)]
        for module in {m for m, _ in moved}:
            assert re.search(rf"^from {re.escape(module)} import", before, re.M), (pack, module)
            assert not any(line.startswith(f"from {module} import") for line in top_level), (pack, module)


def test_the_build_check_finds_the_imports_a_patch_moved_into_functions():
    from docker import check_image

    text = (
        "why\n\n--- a/nodes.py\n+++ b/nodes.py\n@@ -1,3 +1,3 @@\n"
        "-from .pipelines import Pipeline, Config as Conf\n"
        "+import warnings\n"  # at the top: not moved
        "     def run(self):\n"
        "+        from .pipelines import Pipeline, Config as Conf\n"
        "+        import accelerate.utils as au\n"
    )
    assert check_image.moved_imports(text) == [
        (".pipelines", ["Pipeline", "Config"]),
        ("accelerate.utils", []),
    ]


def test_the_build_check_reports_a_moved_import_that_does_not_resolve(tmp_path, monkeypatch):
    from docker import check_image

    pack = tmp_path / "ComfyUI" / "custom_nodes" / "Pack"
    (pack / "sub").mkdir(parents=True)
    (pack / "sub" / "__init__.py").write_text("from .. import helper\nThing = helper.THING\n")
    (pack / "helper.py").write_text("THING = 1\n")
    (tmp_path / "patches" / "Pack").mkdir(parents=True)
    (tmp_path / "patches" / "Pack" / "x.patch").write_text(
        "why\n\n+    from .sub import Thing\n+    from .sub import Gone\n+    from .missing import X\n"
    )
    monkeypatch.delenv("COMFY_NUMBA_CACHE", raising=False)
    monkeypatch.setattr(check_image.sys, "path", list(check_image.sys.path))
    found = check_image.deferred_import_problems(tmp_path / "patches", tmp_path / "ComfyUI")
    assert len(found) == 2 and "Gone" in found[0] and ".missing" in found[1], found


def test_a_patch_that_does_not_apply_is_an_error_and_changes_nothing(tmp_path):
    comfy = tmp_path / "ComfyUI"
    pack = comfy / "custom_nodes" / "Pack"
    pack.mkdir(parents=True)
    (pack / "a.py").write_text("one\ntwo\n")
    (pack / "b.py").write_text("three\n")
    patches = tmp_path / "patches" / "Pack"
    patches.mkdir(parents=True)
    (patches / "x.patch").write_text(
        "why\n\n--- a/a.py\n+++ b/a.py\n@@ -1,2 +1,2 @@\n one\n-two\n+TWO\n"
        "--- a/b.py\n+++ b/b.py\n@@ -1 +1 @@\n-not what is there\n+four\n"
    )
    with pytest.raises(sources.SourceError, match="does not apply"):
        sources.apply_patches(tmp_path / "patches", comfy)
    assert (pack / "a.py").read_text() == "one\ntwo\n", "nothing is half applied"


def test_without_the_patch_program_the_error_says_what_to_install(tmp_path, monkeypatch):
    (tmp_path / "ComfyUI" / "custom_nodes" / "Pack").mkdir(parents=True)
    (tmp_path / "patches" / "Pack").mkdir(parents=True)
    (tmp_path / "patches" / "Pack" / "x.patch").write_text("why\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(sources.SourceError, match="apt-get install patch"):
        sources.apply_patches(tmp_path / "patches", tmp_path / "ComfyUI")


@pytest.mark.parametrize("variant", ["cuda", "cpu"])
def test_the_build_check_imports_the_attention_backends_of_the_cuda_variant(monkeypatch, variant):
    import sys
    import types

    from docker import check_image

    # the CPU variant may hold a CUDA build of torch (a package index's): the variant decides
    torch = types.ModuleType("torch")
    torch.version = types.SimpleNamespace(cuda="12.8")  # type: ignore[attr-defined]
    sage = types.ModuleType("sageattention")
    sage.sageattn = lambda *a, **k: None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "sageattention", sage)
    monkeypatch.setitem(sys.modules, "xformers", None)  # an import that fails
    monkeypatch.setitem(sys.modules, "xformers.ops", None)
    found = check_image.attention_problems(variant)
    if variant == "cpu":
        assert found == []  # the CPU variant has neither
    else:
        assert len(found) == 1 and found[0].startswith(
            "xformers.ops.memory_efficient_attention does not import"
        )


@pytest.mark.parametrize(
    "variant,said,built,ok",
    [
        ("cuda", "12.8", "12.8", True),
        ("cuda", "12.8", "12.9", False),  # torch moved on, the image's CUDA_VERSION did not
        ("cuda", "", "12.8", False),
        ("cpu", "", "12.8", True),  # the CPU variant checks no driver
    ],
)
def test_the_build_check_holds_cuda_version_to_the_installed_torch(monkeypatch, variant, said, built, ok):
    import sys
    import types

    from docker import check_image

    torch = types.ModuleType("torch")
    torch.version = types.SimpleNamespace(cuda=built)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setenv("CUDA_VERSION", said)
    assert (check_image.cuda_version_problems(variant) == []) == ok
