# comfy-stack: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
IMAGE ?= comfy-stack
VARIANT ?= cuda
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv test lint format up down logs build build-cpu serve doctor lock image-lock schemas pin-models settings-docs bench bench-proxy bench-sync bench-jobs clean

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

lint: venv ## ruff (lint) and mypy (types), configured in pyproject.toml; .pre-commit-config.yaml adds hadolint and shellcheck
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

format: venv ## sort imports and format the code (ruff format; line length 110); not part of lint yet
	$(VENV)/bin/ruff check --select I --fix .
	$(VENV)/bin/ruff format .

up: ## start the stack with Docker Compose (GPU); CPU: `make up PROFILE=cpu`
	docker compose --profile $(or $(PROFILE),gpu) up -d
	@echo "ComfyUI behind the login: http://localhost:8188"

down: ## stop the Compose stack (volumes are kept)
	docker compose --profile gpu --profile cpu down

logs: ## follow the Compose stack's logs
	docker compose --profile gpu --profile cpu logs -f

build: ## build the CUDA image
	docker build -f docker/Dockerfile --build-arg VARIANT=cuda -t $(IMAGE):cuda .

build-cpu: ## build the CPU image
	docker build -f docker/Dockerfile --build-arg VARIANT=cpu -t $(IMAGE):cpu .

serve: venv ## run the stack without Docker from a ComfyUI checkout (COMFYUI_DIR, COMFYUI_PYTHON)
	$(VENV)/bin/comfyctl serve

doctor: venv ## report what is misconfigured
	$(VENV)/bin/comfyctl doctor

lock: venv ## refresh custom_nodes/lock.yaml to the packs' current commits
	$(PY) custom_nodes/refresh_lock.py

image-lock: venv ## re-resolve docker/image-lock.txt (COMFYUI_DIR: a checkout with the pinned packs; needs PyPI)
	$(PY) docker/lock_image.py $(COMFYUI_DIR)

pin-models: venv ## write sizes, sha256 and hub commits into workflows/models.yaml (needs the network)
	$(PY) -m model_sync pin --manifest workflows/models.yaml

schemas: venv ## refresh workflows/schemas from a running ComfyUI (COMFYUI_URL, COMFY_TOKEN)
	$(PY) -m workflows.refresh_schemas

settings-docs: venv ## regenerate the variable tables in docs/ from comfy_stack/variables.py
	$(PY) -m comfy_stack.settings_docs

bench: bench-proxy bench-sync bench-jobs ## run every benchmark

bench-proxy: venv ## proxy vs direct vs nginx; writes bench/results/proxy.json
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m bench.proxy

bench-sync: venv ## model_sync vs aws s3 cp vs boto3; writes bench/results/sync.json
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m bench.sync

bench-jobs: venv ## the v2 job API vs ComfyUI's own /prompt; writes bench/results/jobs.json
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m bench.jobs

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache build *.egg-info
