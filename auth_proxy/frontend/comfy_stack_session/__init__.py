"""comfy-stack's extension to ComfyUI's front end: when the login ends while the app is
open (logged out in another tab, the session expired, the password changed), the page goes
to the login page instead of showing errors. No nodes; only the script in web/.

ComfyUI loads it as a custom node pack: `comfyctl serve` adds this folder's parent to the
custom_nodes folders in extra_model_paths.yaml.
"""

NODE_CLASS_MAPPINGS: dict = {}
WEB_DIRECTORY = "./web"
