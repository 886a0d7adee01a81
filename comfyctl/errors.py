"""Typed errors of comfyctl, each mapped to the exit code the command returns.

| code | meaning |
|---:|---|
| 0 | success |
| 1 | unexpected error |
| 2 | bad configuration (the message names the setting and what to do) |
| 3 | the model sync failed (`MODEL_SYNC_MODE=block`); its own message precedes |
| 4 | a required program is missing (supervisord, ComfyUI's interpreter) |
| 5 | `comfyctl doctor` found problems |
"""
from __future__ import annotations


class ComfyctlError(Exception):
    exit_code = 1


class ConfigError(ComfyctlError):
    exit_code = 2


class SyncFailed(ComfyctlError):
    exit_code = 3


class MissingProgram(ComfyctlError):
    exit_code = 4
