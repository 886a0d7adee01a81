"""Durable jobs: the ledger, its storage, the job state machine and the worker that runs a
job on a ComfyUI. Used by auth_proxy's Comfy API v2 routes and, without the proxy, by the
GPU pods of a cluster."""
