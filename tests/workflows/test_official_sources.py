"""The bundled workflows taken from ComfyUI's official templates use the templates' own
file names, folders and hub sources (the package the pinned ComfyUI installs, read by
model_sync's template support), so nothing in models.yaml is a guessed name or URL."""

from __future__ import annotations

import pytest

from model_sync import templates as T
from model_sync.manifest import load_manifest
from tests.support import REPO

MANIFEST = load_manifest(REPO / "workflows/models.yaml")
# bundled workflow (= profile) -> the official template its graph follows
FROM_TEMPLATE = {
    "wan22-fun-camera-a14b": "video_wan2_2_14B_fun_camera",
    "wan22-fun-control-a14b": "video_wan2_2_14B_fun_control",
    "wan22-fun-control-5b": "video_wan2_2_5B_fun_control",
    "wan22-fun-inpaint-a14b": "video_wan2_2_14B_fun_inpaint",
    "wan22-fun-inpaint-5b": "video_wan2_2_5B_fun_inpaint",
    "wan22-s2v-14b": "video_wan2_2_14B_s2v",
    "hunyuan3d-2.0": "3d_hunyuan3d_image_to_model",
    "wan21-fun-inp-1.3b": "wan2.1_fun_inp",
    "wan21-vace-1.3b": "video_wan_vace_14B_ref2v",
}


@pytest.fixture(scope="module")
def official():
    """Every destination any official template names -> the hub sources they give for it."""
    lib = T.Library(T.find_templates_dir(None, None))
    loaded = {n: lib.load(n, MANIFEST.folders, MANIFEST.extensions) for n in lib.index()}
    sources: dict[str, set[str]] = {}
    for t in loaded.values():
        for m in t.models:
            if m.source:
                sources.setdefault(m.dest, set()).add(str(m.source))
    return loaded, sources


@pytest.mark.parametrize("profile", sorted(FROM_TEMPLATE))
def test_profile_files_are_the_templates_own(profile, official):
    loaded, sources = official
    template = loaded[FROM_TEMPLATE[profile]]
    named = {m.dest for m in template.models}
    files = [f for f in MANIFEST.files if profile in f.profiles]
    assert files
    for f in files:
        assert f.dest in named, f"{profile}: {f.dest} is not named by {template.name}"
        # A file shared by several families keeps one source; each is one an official
        # template gives (wan_2.1_vae: the Wan 2.1 and the Wan 2.2 repackaging hold it).
        assert str(f.source) in sources[f.dest], (profile, f.dest, str(f.source), sources[f.dest])


def test_every_new_family_has_a_profile_and_a_workflow():
    for profile in [*FROM_TEMPLATE, "hunyuanimage-2.1"]:
        assert profile in MANIFEST.profiles
        assert (REPO / "workflows/api" / f"{profile}.json").is_file()
        assert (REPO / "workflows/ui" / f"{profile}.json").is_file()


VIDEO = {"prompt", "negative_prompt", "seed", "width", "height", "frames", "steps"}
PARAMS = {
    "wan22-fun-camera-a14b": VIDEO | {"image", "camera", "high_noise_steps"},
    "wan22-fun-control-a14b": VIDEO | {"image", "control_video", "high_noise_steps"},
    "wan22-fun-control-5b": VIDEO | {"image", "control_video"},
    "wan22-fun-inpaint-a14b": VIDEO | {"image", "end_image", "high_noise_steps"},
    "wan22-fun-inpaint-5b": VIDEO | {"image", "end_image"},
    "wan22-s2v-14b": VIDEO | {"image", "audio"},
    "wan21-vace-1.3b": VIDEO | {"image"},
    "wan21-fun-inp-1.3b": VIDEO | {"image"},
    "hunyuanimage-2.1": {"prompt", "negative_prompt", "seed", "width", "height", "steps"},
    "hunyuan3d-2.0": {"seed", "steps", "image"},
}


@pytest.mark.parametrize("profile", sorted(PARAMS))
def test_parameter_map_names_what_the_family_takes(profile):
    import json

    doc = json.loads((REPO / "workflows/api" / f"{profile}.json").read_text(encoding="utf-8"))
    assert PARAMS[profile] <= set(doc["params"]), PARAMS[profile] - set(doc["params"])
