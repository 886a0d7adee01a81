#!/bin/sh
# The image's entrypoint: the same code path as `comfyctl serve`, with the image's
# defaults (COMFYUI_DIR, COMFY_DATA_DIR=/data, ...) from the environment. tini is PID 1;
# supervisord replaces this shell and stops ComfyUI and the proxy on SIGTERM.
set -eu
exec comfyctl serve "$@"
