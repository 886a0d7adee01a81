"""Opt-in tier: ComfyUI's own script_examples through the gate, with the change docs/api.md
shows (an opener that sends the token for urllib, and `header=[...]` for websocket-client).

Only what a test needs is changed besides: the address of the gate, a workflow that runs
without weights instead of the examples' SD1.5 checkpoint, and a line that prints what the
script got. Unchanged, each script is refused (401).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys

import pytest

from tests.support.comfyui import SMOKE_PROMPT

pytestmark = pytest.mark.comfyui

# The change docs/api.md gives, line for line: two after the imports, one on ws.connect.
OPENER = (
    'opener = {m}.build_opener(); opener.addheaders = [("Authorization", "Bearer {token}")]\n'
    "{m}.install_opener(opener)\n"
)
WS_CONNECT = ', header=["Authorization: Bearer {token}"])'


def adapted(source: str, server: str, token: str, prompt: dict, documented_change: bool) -> str:
    text = source.replace('"127.0.0.1:8188"', repr(server)).replace(
        "http://127.0.0.1:8188", f"http://{server}"
    )
    # the examples' graph needs an SD1.5 checkpoint: use one that runs without weights
    text = re.sub(r'prompt_text = """.*?"""\n', "", text, flags=re.S)
    text = re.sub(
        r"prompt = json\.loads\(prompt_text\)\n(?:.*\n)*?(?=\S*ws = |queue_prompt\(prompt\))",
        f"prompt = json.loads({json.dumps(json.dumps(prompt))})\n",
        text,
    )
    if documented_change:
        module = "request" if "from urllib import request" in text else "urllib.request"
        last_import = list(re.finditer(r"^(?:import|from) .*\n", text, flags=re.M))[-1]
        text = text[: last_import.end()] + OPENER.format(m=module, token=token) + text[last_import.end() :]
        text = re.sub(
            r"(ws\.connect\(.*?\))\)\n", lambda m: m.group(1) + WS_CONNECT.format(token=token) + "\n", text
        )
    if "images = get_images(ws, prompt)" in text:
        text += "\nprint(json.dumps({node: len(imgs) for node, imgs in images.items()}))\n"
    return text


@pytest.fixture
async def gate(comfy, proxy_for):
    proxy = await proxy_for(comfy.url)
    return proxy.origin.split("//")[1], proxy.token


WS_IMAGES_PROMPT = {
    **{k: v for k, v in SMOKE_PROMPT.items() if k != "4"},
    "save_image_websocket_node": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["3", 0]}},
}


@pytest.mark.parametrize(
    "name,prompt,printed",
    [
        ("basic_api_example.py", SMOKE_PROMPT, None),
        ("websockets_api_example.py", SMOKE_PROMPT, {"4": 1}),
        ("websockets_api_example_ws_images.py", WS_IMAGES_PROMPT, {"save_image_websocket_node": 1}),
    ],
)
async def test_script_examples_work_through_the_gate_with_the_documented_change(
    comfy, gate, tmp_path, name, prompt, printed
):
    server, token = gate
    source = (comfy.dir / "script_examples" / name).read_text()
    for documented_change in (False, True):
        script = tmp_path / f"{'changed' if documented_change else 'as-is'}-{name}"
        script.write_text(adapted(source, server, token, prompt, documented_change))
        run = await asyncio.to_thread(
            subprocess.run, [sys.executable, str(script)], capture_output=True, text=True, timeout=180
        )
        if not documented_change:
            assert run.returncode != 0 and ("401" in run.stderr or "Unauthorized" in run.stderr), run.stderr
            continue
        assert run.returncode == 0, run.stderr
        if printed is not None:
            assert json.loads(run.stdout.strip().splitlines()[-1]) == printed
    if name == "basic_api_example.py":  # it only queues: the image appears in ComfyUI's output
        outputs = comfy.data / "output" / "smoke"
        for _ in range(120):
            if any(outputs.glob("smoke_*.png")):
                break
            await asyncio.sleep(0.5)
        assert any(outputs.glob("smoke_*.png"))
