# Two commands do all set-up on a fresh machine:
#   make run    build the embedded default model (all-MiniLM-L6-v2) and serve it with Triton
#   make test   run the test suite
# Both install what they need into .venv first (torch pinned before anything else).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION := 2.13.0
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: setup tools run test lint format clean cluster cluster-down

setup: $(STAMP) tools

# System tools the tests need and pip cannot install: prometheus and promtool (Debian's package).
# Only when one is missing, so it costs nothing once installed; sudo unless already root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
tools:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
		$(SUDO) apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; }

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install torch==$(TORCH_VERSION)
	$(BIN)/pip install -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

run: setup
	$(BIN)/kubeformer run

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# A real control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok) in the
# background, the same one the tests start; binaries are built on first use into ~/.cache/kubeformer.
# Its kubeconfig is .cluster/kubeconfig once it is ready.
cluster: setup
	$(BIN)/python -m tests.cluster up

cluster-down: setup
	$(BIN)/python -m tests.cluster down
