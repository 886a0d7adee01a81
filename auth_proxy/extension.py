"""The gate's extension to ComfyUI's front end (auth_proxy/frontend/comfy_stack_session).

`CUSTOM_NODES` is a custom_nodes folder holding that one pack: comfyctl serve lists it in
extra_model_paths.yaml, so ComfyUI serves its script at /extensions/comfy_stack_session/
and the front end loads it like any pack's. It is package data, so it is there in an
installed wheel as in a checkout.
"""

from __future__ import annotations

from pathlib import Path

CUSTOM_NODES = Path(__file__).resolve().parent / "frontend"
