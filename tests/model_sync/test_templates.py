"""`template:NAME` profiles, resolved from the real templates package the pinned ComfyUI
installs (comfyui-workflow-templates 0.1.95, in the dev extras), synced from the hub
stand-in and from an S3 prefix with --from, and listed by `templates`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import comfyui_workflow_templates
import pytest

from model_sync import templates as T
from model_sync.errors import ManifestError, UsageError
from model_sync.manifest import load_manifest
from model_sync.planner import select_files
from tests.support import REPO
from tests.support.sync_cli import cli_env, digests, run_cli, safetensors_bytes, tree, upload

PACKAGE_DIR = Path(comfyui_workflow_templates.get_templates_path())
MANIFEST = REPO / "workflows/models.yaml"
S2V = "video_wan2_2_14B_s2v"
# What the S2V template's loaders name (file, folder, hub URL), as its graph carries them.
S2V_FILES = {
    "text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors": (
        "Comfy-Org/Wan_2.1_ComfyUI_repackaged",
        "split_files/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors",
    ),
    "vae/wan_2.1_vae.safetensors": (
        "Comfy-Org/Wan_2.2_ComfyUI_Repackaged",
        "split_files/vae/wan_2.1_vae.safetensors",
    ),
    "audio_encoders/wav2vec2_large_english_fp16.safetensors": (
        "Comfy-Org/Wan_2.2_ComfyUI_Repackaged",
        "split_files/audio_encoders/wav2vec2_large_english_fp16.safetensors",
    ),
    "loras/wan2.2_t2v_lightx2v_4steps_lora_v1.1_high_noise.safetensors": (
        "Comfy-Org/Wan_2.2_ComfyUI_Repackaged",
        "split_files/loras/wan2.2_t2v_lightx2v_4steps_lora_v1.1_high_noise.safetensors",
    ),
    "diffusion_models/wan2.2_s2v_14B_fp8_scaled.safetensors": (
        "Comfy-Org/Wan_2.2_ComfyUI_Repackaged",
        "split_files/diffusion_models/wan2.2_s2v_14B_fp8_scaled.safetensors",
    ),
}


def library() -> T.Library:
    return T.Library(T.find_templates_dir(None, None))


def test_the_installed_package_is_found_and_read_as_the_frontend_reads_it():
    lib = library()
    assert lib.dir == PACKAGE_DIR
    m = load_manifest(MANIFEST)
    t = lib.load(S2V, m.folders, m.extensions)
    assert t.title == "Wan2.2-S2V Audio-Driven Video Generation" and t.size_gb == 23.52
    assert {x.dest: (x.source.bucket, x.source.key) for x in t.models} == S2V_FILES
    assert all(x.source.revision == "" for x in t.models)  # resolve/main: the default branch
    assert t.problems == () and t.unsourced == ()
    # `?download=true` on the URL (the Wan 2.1 templates) is not part of the path
    fun = lib.load("wan2.1_fun_inp", m.folders, m.extensions)
    assert "diffusion_models/wan2.1_fun_inp_1.3B_bf16.safetensors" in {x.dest for x in fun.models}
    assert all("?" not in x.source.key for x in fun.models)


def test_urls_that_are_not_hub_resolve_urls_are_reported_not_guessed():
    m = load_manifest(MANIFEST)
    hidream = library().load("hidream_e1_full", m.folders, m.extensions)
    blob = {x.dest: x.url for x in hidream.unsourced}
    assert (
        blob["vae/ae.safetensors"]
        == "https://huggingface.co/Comfy-Org/HiDream-I1_ComfyUI/blob/main/split_files/vae/ae.safetensors"
    )
    civitai = library().load("lora", m.folders, m.extensions)
    assert {x.dest for x in civitai.unsourced} == {
        "loras/MoXinV1.safetensors",
        "loras/blindbox_v1_mix.safetensors",
        "checkpoints/dreamshaper_8.safetensors",
    }
    assert (
        T.hub_source("https://huggingface.co/o/r/resolve/abc123/a/b.safetensors?download=true").revision
        == "abc123"
    )
    for url in (
        "https://huggingface.co/o/r/blob/main/x.safetensors",
        "https://civitai.com/api/download/models/1",
        "http://huggingface.co/o/r/resolve/main/x.safetensors",
        "https://huggingface.co/o/r/resolve/main/",
    ):
        assert T.hub_source(url) is None, url


def test_embedded_models_follow_the_frontends_missing_models_check():
    """Only the entries a node has selected (its widget value), subgraph nodes included, plus
    the graph's top-level list; an entry without a URL is skipped, as the frontend does."""

    def node(value, *names):
        return {
            "widgets_values": [value, "default"],
            "properties": {
                "models": [
                    {"name": n, "url": f"https://huggingface.co/o/r/resolve/main/{n}", "directory": "vae"}
                    for n in names
                ]
            },
        }

    graph = {
        "nodes": [node("a.safetensors", "a.safetensors", "alt.safetensors")],
        "definitions": {"subgraphs": [{"nodes": [node("b.safetensors", "b.safetensors")]}]},
        "models": [
            {
                "name": "c.safetensors",
                "url": "https://huggingface.co/o/r/resolve/main/c.safetensors",
                "directory": "loras",
            },
            {"name": "nourl.safetensors", "directory": "vae"},
        ],
    }
    assert [x["name"] for x in T.embedded_models(graph)] == [
        "a.safetensors",
        "b.safetensors",
        "c.safetensors",
    ]
    graph["nodes"].append(node("a.safetensors", "a.safetensors"))
    graph["nodes"][1]["properties"]["models"][0]["url"] = (
        "https://huggingface.co/o/other/resolve/main/a.safetensors"
    )
    graph["nodes"].append(node("x.txt", "x.txt"))
    m = load_manifest(MANIFEST)
    models, problems = T.resolve("t", graph, m.folders, m.extensions)
    assert [x.dest for x in models] == ["vae/a.safetensors", "vae/b.safetensors", "loras/c.safetensors"]
    assert any("vae/a.safetensors: named with two sources" in p for p in problems)
    assert any("unrecognised extension '.txt'" in p for p in problems)


def test_lookup_asks_comfyuis_interpreter_and_explains_when_nothing_is_installed(monkeypatch, tmp_path):
    monkeypatch.setattr(T, "_candidates_here", lambda: [])
    assert T.find_templates_dir(None, Path(sys.executable)) == PACKAGE_DIR  # through a child interpreter
    with pytest.raises(UsageError, match="COMFYUI_PYTHON"):
        T.find_templates_dir(None, None)
    with pytest.raises(UsageError, match="has no index.json"):
        T.find_templates_dir(tmp_path, None)


def test_the_newer_json_package_is_preferred(tmp_path, monkeypatch):
    """Releases after 0.1.x ship the graphs as `comfyui_workflow_templates_json`, and the
    meta package keeps its import name without a templates/ folder."""
    pkg = tmp_path / "comfyui_workflow_templates_json"
    (pkg / "templates").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "templates/index.json").write_text(
        json.dumps(
            [
                {
                    "moduleName": "x",
                    "title": "x",
                    "templates": [
                        {
                            "name": "one",
                            "title": "One",
                            "mediaType": "image",
                            "mediaSubtype": "webp",
                            "description": "",
                            "size": 0.1,
                        }
                    ],
                }
            ]
        )
    )
    (pkg / "templates/one.json").write_text(
        json.dumps(
            {
                "nodes": [
                    {
                        "widgets_values": ["a.safetensors"],
                        "properties": {
                            "models": [
                                {
                                    "name": "a.safetensors",
                                    "directory": "vae",
                                    "url": "https://huggingface.co/o/r/resolve/main/a.safetensors",
                                }
                            ]
                        },
                    }
                ]
            }
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    lib = library()
    assert lib.dir == pkg / "templates" and list(lib.index()) == ["one"]


def hub_with(hub, files: dict[str, tuple[str, str]]) -> dict[str, bytes]:
    data = {dest: safetensors_bytes(500 + 100 * i, i) for i, dest in enumerate(sorted(files))}
    by_repo: dict[str, dict[str, bytes]] = {}
    for dest, (repo, path) in files.items():
        by_repo.setdefault(repo, {})[path] = data[dest]
    for repo, content in by_repo.items():
        hub.add(repo, content)
    return data


def test_template_profile_syncs_exactly_its_files_from_the_hub(hub, tmp_path):
    data = hub_with(hub, S2V_FILES)
    env = cli_env(HF_ENDPOINT=hub.url)
    args = ["sync", "--manifest", str(tmp_path / "empty.yaml"), "--models-dir", str(tmp_path / "m")]
    (tmp_path / "empty.yaml").write_text("version: 1\nfiles: []\n")
    dry = run_cli(args + ["--profile", f"template:{S2V}", "--dry-run"], env)
    assert dry.rc == 0, dry.stderr[-3000:]
    assert "plan: 5 to fetch" in dry.stdout
    cold = run_cli(args, env | {"MODEL_PROFILES": f"template:{S2V}"})
    assert cold.rc == 0, cold.stderr[-3000:]
    assert cold.summary["fetched"] == 5
    assert tree(tmp_path / "m") == digests(data)
    warm = run_cli(args, env | {"MODEL_PROFILES": f"template:{S2V}"})
    assert warm.summary["skipped"] == 5 and warm.summary["bytes_transferred"] == 0


def test_manifest_entries_take_precedence_and_curated_profiles_are_unchanged(hub, tmp_path):
    """The bundled manifest has the S2V VAE from the Wan 2.1 repository (the same file the
    template names in the Wan 2.2 one): the manifest's source is used, and a curated profile
    selected beside the template keeps only its own files."""
    files = dict(S2V_FILES)
    files["vae/wan_2.1_vae.safetensors"] = (
        "Comfy-Org/Wan_2.1_ComfyUI_repackaged",
        "split_files/vae/wan_2.1_vae.safetensors",
    )
    data = hub_with(hub, files)
    res = run_cli(
        [
            "sync",
            "--manifest",
            str(MANIFEST),
            "--models-dir",
            str(tmp_path / "m"),
            "--profile",
            f"template:{S2V}",
        ],
        cli_env(HF_ENDPOINT=hub.url),
    )
    assert res.rc == 0, res.stderr[-3000:]
    assert tree(tmp_path / "m") == digests(data)
    assert not any("Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files/vae" in p for _, p, _ in hub.requests)
    profiles = ("wan22-ti2v-5b", f"template:{S2V}")
    merged = T.with_templates(load_manifest(MANIFEST), profiles, library(), None)
    ti2v = {
        "diffusion_models/wan2.2_ti2v_5B_fp16.safetensors",
        "vae/wan2.2_vae.safetensors",
        "text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors",
    }
    assert {i.dest for i in select_files(merged, profiles, None)} == set(S2V_FILES) | ti2v


def test_from_prefix_serves_a_template_whose_urls_are_not_on_the_hub(s3, bucket, tmp_path):
    """`template:lora` names Civitai downloads: without --from the sync refuses before any
    transfer, naming each URL; with --from the files come from PREFIX/<folder>/<name>."""
    names = [
        "loras/MoXinV1.safetensors",
        "loras/blindbox_v1_mix.safetensors",
        "checkpoints/dreamshaper_8.safetensors",
    ]
    files = {rel: safetensors_bytes(300 + i, i) for i, rel in enumerate(names)}
    upload(s3, bucket, files)
    (tmp_path / "empty.yaml").write_text("version: 1\nfiles: []\n")
    args = [
        "sync",
        "--manifest",
        str(tmp_path / "empty.yaml"),
        "--models-dir",
        str(tmp_path / "m"),
        "--profile",
        "template:lora",
    ]
    refused = run_cli(args, cli_env(**s3.env()))
    assert refused.rc == 3 and "Traceback" not in refused.stderr
    assert (
        "https://civitai.com/api/download/models/14856" in refused.stderr
        and "not a hub resolve URL" in refused.stderr
    )
    assert not (tmp_path / "m").exists() or tree(tmp_path / "m") == {}
    res = run_cli(args + ["--from", f"s3://{bucket}/models"], cli_env(**s3.env()))
    assert res.rc == 0, res.stderr[-3000:]
    assert tree(tmp_path / "m") == digests(files)


def test_unknown_template_is_a_usage_error_with_suggestions(tmp_path):
    res = run_cli(
        [
            "sync",
            "--manifest",
            str(MANIFEST),
            "--models-dir",
            str(tmp_path),
            "--profile",
            "template:video_wan2_2_14B_s2",
            "--dry-run",
        ],
        cli_env(),
    )
    assert res.rc == 2 and "did you mean video_wan2_2_14B_s2v" in res.stderr and "Traceback" not in res.stderr


def test_templates_lists_sizes_from_the_index_and_from_the_sources(hub, tmp_path):
    listing = run_cli(["templates"], cli_env())
    assert listing.rc == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if line.startswith(S2V + " "))
    assert "23.5 GB*" in row and "Wan2.2-S2V" in row
    assert "lora " in listing.stdout and "problem(s)" in next(
        line for line in listing.stdout.splitlines() if line.startswith("lora ")
    )
    assert not any(line.startswith("api_openai_dall_e_3_t2i ") for line in listing.stdout.splitlines())
    data = hub_with(hub, S2V_FILES)
    stat = run_cli(["templates", S2V, "--stat", "--json"], cli_env(HF_ENDPOINT=hub.url))
    assert stat.rc == 0, stat.stderr[-3000:]
    (doc,) = json.loads(stat.stdout)["templates"]
    assert doc["profile"] == f"template:{S2V}" and doc["size_bytes"] == sum(len(v) for v in data.values())
    assert {f"{m['folder']}/{m['path']}": m["size"] for m in doc["models"]} == {
        k: len(v) for k, v in data.items()
    }


def test_comfyctl_templates_is_the_same_listing():
    import subprocess

    out = subprocess.run(
        [sys.executable, "-m", "comfyctl", "templates", "3d_hunyuan3d_image_to_model"],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert (
        "checkpoints/hunyuan3d-dit-v2_fp16.safetensors  <- hf://Comfy-Org/hunyuan3D_2.0_repackaged/"
        "split_files/hunyuan3d-dit-v2_fp16.safetensors" in out.stdout
    )
    assert "total: 4.6 GB*" in out.stdout


def test_with_templates_refuses_unsourced_files_without_from():
    m = load_manifest(MANIFEST)
    with pytest.raises(ManifestError, match="not a hub resolve URL"):
        T.with_templates(m, ("template:lora",), library(), None)
    merged = T.with_templates(m, ("template:lora",), library(), "s3://b/models")
    assert {f.dest for f in merged.files if "template:lora" in f.profiles} == {
        "loras/MoXinV1.safetensors",
        "loras/blindbox_v1_mix.safetensors",
        "checkpoints/dreamshaper_8.safetensors",
    }


@pytest.mark.comfyui
def test_templates_of_a_real_comfyui_interpreter(monkeypatch):
    """Opt-in tier: the package as ComfyUI's own interpreter has it (COMFYUI_PYTHON), as a
    bare-metal `comfyctl serve` finds it, at the version the pinned ComfyUI requires."""
    from tests.support import comfyui_paths

    _, python = comfyui_paths()
    monkeypatch.setattr(T, "_candidates_here", lambda: [])
    found = T.find_templates_dir(None, python)
    assert found.name == "templates" and found.parent.name == "comfyui_workflow_templates"
    assert (found / f"{S2V}.json").read_bytes() == (PACKAGE_DIR / f"{S2V}.json").read_bytes()
