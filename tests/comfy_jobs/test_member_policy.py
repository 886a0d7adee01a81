"""What a member's workflow may not do (comfy_jobs/member_policy.py), decided the way the
pinned ComfyUI resolves file names."""

from __future__ import annotations

import pytest

from comfy_jobs.member_policy import Refused, annotated, check


def load(value, cls="LoadImage", name="image"):
    return {"1": {"class_type": cls, "inputs": {name: value}}}


@pytest.mark.parametrize(
    "value",
    [
        "photo.png",
        "alice/photo.png",
        "alice/sub/photo.png [input]",
        "alice/ComfyUI_00001_.png [output]",
        "v2-0f1e2d-photo.png",
        ["7", 0],
    ],
)
def test_a_members_own_files_and_shared_ones(value):
    check(load(value), "alice")


@pytest.mark.parametrize(
    "value, why",
    [
        ("bob/photo.png", "another person's input"),
        ("bob/ComfyUI_00001_.png [output]", "another person's output"),
        ("ComfyUI_00001_.png [output]", "another person's output"),
        ("alice/x.pngX[output]", None),  # ComfyUI reads output/alice/x.png: hers
        ("x.pngX[output]", "another person's output"),  # ComfyUI reads output/x.png, the admin's
        ("ComfyUI_temp_abcde_00001_.png [temp]", "temp folder"),
        ("../output/bob/x.png", "leaves its folder"),
        ("alice/../bob/x.png", "leaves its folder"),
        ("/etc/passwd", "absolute path"),
        ("C:/x.png", "absolute path"),
        ("alice\\..\\bob\\x.png", "absolute path"),
        ("alice//x.png", "leaves its folder"),
    ],
)
def test_other_peoples_files_and_paths_are_refused(value, why):
    if why is None:
        check(load(value), "alice")
        return
    with pytest.raises(Refused, match=why):
        check(load(value), "alice")


def test_annotations_resolve_as_comfyui_does():
    assert annotated("a.png [output]") == ("a.png", "output")
    assert annotated("a.pngX[output]") == ("a.png", "output")
    assert annotated("a.png [temp]") == ("a.png", "temp")
    assert annotated("a.png") == ("a.png", "input")


@pytest.mark.parametrize("cls", ["VHS_LoadVideoPath", "SaveStringKJ", "VRAM_Debug", "Hy3D21LoadMesh"])
def test_nodes_that_reach_any_path_or_the_shared_server_are_refused(cls):
    with pytest.raises(Refused, match="only an admin"):
        check({"5": {"class_type": cls, "inputs": {}}}, "alice")


def test_more_classes_can_be_denied_and_ffmpeg_options_are_choices():
    with pytest.raises(Refused, match="not allowed for members"):
        check({"1": {"class_type": "MyPackShell", "inputs": {}}}, "alice", extra_denied=["MyPackShell"])
    combine = {"1": {"class_type": "VHS_VideoCombine", "inputs": {"dither": "bayer"}}}
    check(combine, "alice")
    combine["1"]["inputs"]["dither"] = "none[x];movie=/etc/passwd"
    with pytest.raises(Refused, match="dither"):
        check(combine, "alice")


def test_other_inputs_and_links_are_not_file_names():
    prompt = {
        "1": {"class_type": "CLIPTextEncode", "inputs": {"text": "../../a cat /walking", "clip": ["2", 0]}},
        "2": {"class_type": "LoadImage", "inputs": {"image": ["3", 0]}},
    }
    check(prompt, "alice")
