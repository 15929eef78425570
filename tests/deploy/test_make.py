"""The README's two set-up commands, as make would run them (`make -n`: printed, not run).

| change (tried, seen red) | failing test |
|---|---|
| `make demo` installing `requirements/test.txt` | test_make_demo_installs_the_runtime_only |
| `--quiet` back on the demo's pip installs | test_make_demo_installs_the_runtime_only |
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.stack import ROOT


def planned(target: str, tmp_venv: str) -> list[str]:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make not installed")
    # As a user runs it, not as a sub-make of `make test` (which would print directories).
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    result = subprocess.run(
        [make, "--no-print-directory", "-n", "-B", f"VENV={tmp_venv}", target],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.splitlines()


def test_make_demo_installs_the_runtime_only(tmp_path: Path) -> None:
    commands = planned("demo", str(tmp_path / "venv"))
    installs = [c for c in commands if " install " in c]
    assert any("-r requirements/runtime.txt" in c and "--require-hashes" in c for c in installs)
    assert not any("requirements/test.txt" in c or "[test]" in c for c in installs)
    assert not any("--quiet" in c or " -q " in c for c in installs)  # pip's progress shows
    assert commands[-1].endswith("vias-exporter --demo")


def test_make_test_installs_the_test_extra_then_runs_pytest(tmp_path: Path) -> None:
    commands = planned("test", str(tmp_path / "venv"))
    assert any("-r requirements/test.txt" in c and "--require-hashes" in c for c in commands)
    assert commands[-1].endswith("python -m pytest")
