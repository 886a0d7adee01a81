"""The Comfy API v2 on the proxy's port (`/api/v2/jobs`, `/api/v2/assets`, SSE events):
thin HTTP adapters over comfy_jobs.service.JobsService, mounted by auth_proxy/routes.py
behind the same gate as every other route. The contract: spec/openapi.yaml in
Comfy-Org/comfy-api-proxy."""
