"""Skips must not hide failures: where every suite must run (REQUIRE_ALL_SUITES=1, or CI
set), a suite skipped for a missing tool fails the run. Shown with real pytest runs of two
suites, in a process whose PATH has none of their tools.

| change (tried, seen red) | failing test |
|---|---|
| tests/conftest.py without `pytest_runtest_makereport` | test_a_skipped_test_fails_... |
| tests/conftest.py without `pytest_sessionfinish` | test_a_skipped_module_fails_... |
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMTOOL_TEST = "tests/deploy/test_alert_rules.py::test_promtool_check_rules"
E2E_MODULE = "tests/e2e/test_prometheus_e2e.py"


def pytest_without_tools(
    tmp_path: Path, strict: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """pytest on `args` with an empty PATH (no promtool, prometheus, ...)."""
    empty = tmp_path / "empty-path"
    empty.mkdir(exist_ok=True)
    env = {**os.environ, "PATH": str(empty), "REQUIRE_ALL_SUITES": strict}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_skipped_test_fails_where_every_suite_must_run(tmp_path: Path) -> None:
    result = pytest_without_tools(tmp_path, "1", PROMTOOL_TEST)
    assert result.returncode == 1, result.stdout
    assert "skipped where every suite must run" in result.stdout
    assert "promtool not installed" in result.stdout
    assert "1 error" in result.stdout.splitlines()[-1]  # a fixture's skip: a setup error


def test_a_skipped_module_fails_where_every_suite_must_run(tmp_path: Path) -> None:
    result = pytest_without_tools(tmp_path, "1", E2E_MODULE)
    assert result.returncode == 1, result.stdout
    assert "skipped where every suite must run" in result.stdout
    assert "prometheus and prometheus-alertmanager are needed" in result.stdout


def test_a_developer_without_the_tools_gets_skips(tmp_path: Path) -> None:
    result = pytest_without_tools(tmp_path, "0", PROMTOOL_TEST, E2E_MODULE)
    assert result.returncode == 0, result.stdout
    assert "2 skipped" in result.stdout.splitlines()[-1]
