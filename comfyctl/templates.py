"""`comfyctl templates`: ComfyUI's official templates that work as `template:NAME` model
profiles (MODEL_PROFILES=template:NAME), with their files and download sizes. The same
command as `python -m model_sync templates`; the templates are read where ComfyUI has
them installed (this interpreter, else COMFYUI_PYTHON's)."""

from model_sync.template_list import add_arguments, main

__all__ = ["add_arguments", "main"]
