# comfy-stack: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
IMAGE ?= comfy-stack
VARIANT ?= cuda
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv test lint format test-image test-image-cuda up down logs build build-cpu bases serve doctor lock image-lock schemas pin-models settings-docs bench bench-proxy bench-sync bench-jobs bench-scale bench-start bench-gpu clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

venv: $(VENV)/.installed ## create .venv with the project and its test tools

test: venv lint ## lint, then run the test suite (the opt-in ComfyUI tier runs when COMFYUI_DIR and COMFYUI_PYTHON are set)
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m pytest $(PYTEST_ARGS)

lint: venv ## ruff (lint and format check) and mypy (types), configured in pyproject.toml; .pre-commit-config.yaml adds hadolint and shellcheck
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: venv ## sort imports and format the code (ruff format; line length 110), as `make lint` checks
	$(VENV)/bin/ruff check --select I --fix .
	$(VENV)/bin/ruff format .

up: ## start the stack with Docker Compose (GPU); CPU: `make up PROFILE=cpu`; the cluster layout on one host: `make up PROFILE=scale`
	docker compose --profile $(or $(PROFILE),gpu) up -d
	@echo "ComfyUI behind the login: http://localhost:8188"

down: ## stop the Compose stack (volumes are kept)
	docker compose --profile gpu --profile cpu --profile scale down

logs: ## follow the Compose stack's logs
	docker compose --profile gpu --profile cpu --profile scale logs -f

# The image's outside sources can be pointed elsewhere (docs/build.md), e.g.
#   make build-cpu PIP_INDEX_URL=https://mirrors.aliyun.com/pypi/simple GIT_MIRROR=https://ghfast.top/https://github.com/
#   make build SOURCES_DIR=/srv/comfy-sources EXTRA_CA_CERTS=/etc/company-ca.pem UBUNTU_IMAGE=registry.local/ubuntu:24.04
# Each variable goes to `python -m docker.build` unchanged; empty means the default.
BUILD_VARS := SOURCES_DIR EXTRA_CA_CERTS UBUNTU_IMAGE CUDA_DEVEL APT_MIRROR PIP_INDEX_URL TORCH_INDEX_URL GIT_MIRROR DOCKER_BUILD_FLAGS TORCH_CUDA_ARCH_LIST
export $(BUILD_VARS)

build: ## build the CUDA image (comfy-stack:cuda); docs/build.md lists the mirror and offline settings
	$(PYTHON) -m docker.build --variant cuda --tag $(IMAGE):cuda

build-cpu: ## build the CPU image (comfy-stack:cpu)
	$(PYTHON) -m docker.build --variant cpu --tag $(IMAGE):cpu

bases: ## build the base images locally from Ubuntu's archive with mmdebstrap (no Docker Hub needed)
	$(PYTHON) -m docker.bases $(if $(APT_MIRROR),--mirror $(APT_MIRROR))

test-image: venv ## build the CPU image and test it end to end through port 8188 (needs Docker; starts dockerd if none runs)
	COMFY_STACK_IMAGE_TIER=1 PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m pytest tests/image $(PYTEST_ARGS)

test-image-cuda: venv ## compile the CUDA variant's extensions (for TORCH_CUDA_ARCH_LIST, default 8.6 only) and import them in a container (no GPU needed)
	COMFY_STACK_IMAGE_TIER=1 COMFY_STACK_IMAGE_CUDA=1 PATH="$(abspath $(VENV))/bin:$$PATH" \
	  $(PY) -m pytest tests/image/test_cuda_extensions.py $(PYTEST_ARGS)

serve: venv ## run the stack without Docker (COMFYUI_DIR, COMFYUI_PYTHON; unset: fetch the pinned ComfyUI into the data folder)
	$(VENV)/bin/comfyctl serve

doctor: venv ## report what is misconfigured
	$(VENV)/bin/comfyctl doctor

lock: venv ## refresh custom_nodes/lock.yaml to the packs' current commits
	$(PY) custom_nodes/refresh_lock.py

image-lock: venv ## re-resolve docker/image-lock.txt (COMFYUI_DIR: a checkout with the pinned packs; needs PyPI)
	$(PY) -m docker.lock_image $(COMFYUI_DIR)

pin-models: venv ## write sizes, sha256 and hub commits into workflows/models.yaml (needs the network)
	$(PY) -m model_sync pin --manifest workflows/models.yaml

schemas: venv ## refresh workflows/schemas from a running ComfyUI (COMFYUI_URL, COMFY_TOKEN)
	$(PY) -m workflows.refresh_schemas

settings-docs: venv ## regenerate the variable tables in docs/ from comfy_stack/variables.py
	$(PY) -m comfy_stack.settings_docs

bench: bench-proxy bench-sync bench-jobs bench-scale bench-start ## run every benchmark

bench-proxy: venv ## proxy vs direct vs nginx; writes bench/results/proxy.json
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m bench.proxy

bench-sync: venv ## model_sync vs aws s3 cp vs boto3; writes bench/results/sync.json
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m bench.sync

bench-jobs: venv ## the v2 job API vs ComfyUI's own /prompt; writes bench/results/jobs.json
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m bench.jobs

bench-scale: venv ## 1, 2, 3 workers on PostgreSQL: scaling efficiency, the gateway's dispatch overhead, the ledger alone; writes bench/results/scale.json
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m bench.scale

bench-gpu: venv ## Wan 2.2 TI2V 5B (random weights of the real shapes) through the gate vs ComfyUI alone, per attention backend; a GPU where there is one, else a tiny size on the CPU (COMFYUI_DIR, COMFYUI_PYTHON; docs/gpu-check.md); writes bench/results/gpu.json
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m bench.gpu

bench-start: venv ## a new container and a ComfyUI crash until ready vs ComfyUI alone in the same image (needs Docker and `make build-cpu`); writes bench/results/start.json
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m bench.start

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache build *.egg-info
