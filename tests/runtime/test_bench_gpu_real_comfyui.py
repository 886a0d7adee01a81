"""Opt-in tier: `make bench-gpu`'s path at its tiny size on a real ComfyUI (COMFYUI_DIR,
COMFYUI_PYTHON): weights of Wan 2.2 TI2V 5B's architecture written from ComfyUI's own model
definitions, detected and loaded as that model, sampled, decoded, the video saved and fetched
through the gate, and the same workflow on ComfyUI alone. About four minutes on 2 CPU cores,
most of it the real-size umt5-xxl text encoder (bench/wan_weights.py says why it cannot be
smaller); the weights are written once into build/bench-gpu/ and reused."""

from __future__ import annotations

import pytest

from bench import gpu
from tests.support import comfyui_paths

pytestmark = [pytest.mark.comfyui, pytest.mark.timeout(1200)]


def test_the_tiny_wan_workflow_runs_through_the_gate_and_on_comfyui_alone():
    comfy_dir, python = comfyui_paths()
    models = gpu.weights("tiny", comfy_dir, python)
    result = gpu.measure("tiny", "auto", comfy_dir, python, models, repeats=1)
    # ComfyUI took the diffusion model for Wan 2.2 TI2V 5B (its WAN22 class) by its shapes
    assert result["detected"], result
    assert result["steps_seen"] == gpu.SIZES["tiny"]["steps"]
    # the video, saved by ComfyUI and downloaded through the gate, is an MP4
    assert result["video_is_mp4"] and result["video_bytes"] > 0
    assert result["gate"]["runs"] == result["alone"]["runs"] == 1
    # on the CPU the attention setting is ignored, and the start said so
    assert result["attention"].startswith("no flag (CPU")
