"""What auth_proxy, model_sync and comfyctl share: file writes that never leave half a file
(`comfy_stack.files`) and the environment variables, each declared once
(`comfy_stack.variables`, read through `comfy_stack.env`)."""
