"""model_sync: model files from OSS, S3, the Hugging Face hub or HTTPS into ComfyUI folders, verified."""
