"""comfyctl: the user's command line for comfy-stack (serve, run, doctor, drain)."""
