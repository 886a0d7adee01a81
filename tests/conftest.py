import pytest

from tests.support import REPO


@pytest.fixture
def repo_root():
    return REPO


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    """A real ComfyUI on CPU for the opt-in tier (skips unless COMFYUI_DIR/COMFYUI_PYTHON)."""
    from tests.support.comfyui import RealComfyUI

    c = RealComfyUI(tmp_path_factory.mktemp("comfy")).start()
    yield c
    c.stop()
