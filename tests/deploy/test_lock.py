"""requirements/*.txt, the hash-checked locks, match pyproject.toml (offline: each lock
records a fingerprint of the lists it was compiled from), and everything installs from them.

| change (tried, seen red) | failing tests |
|---|---|
| pyproject.toml: a new runtime dependency, locks not recompiled | test_the_locks_match_pyproject |
| | (and test_a_test_dependency_makes_only_the_test_lock_stale, which copies it) |
| runtime.txt: a pin's hashes deleted | test_the_locks_match_pyproject |
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from tests.deploy.stack import ROOT

LOCKS = ROOT / "requirements"


@pytest.fixture(scope="module")
def lock() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lock", LOCKS / "lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_locks_match_pyproject(lock: ModuleType) -> None:
    assert lock.problems() == [], "stale locks: run `make lock` (README, Development)"


@pytest.fixture
def copy(tmp_path: Path) -> tuple[Path, Path]:
    """pyproject.toml and the locks, copied to be spoilt."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(LOCKS, tmp_path / "requirements")
    return tmp_path / "pyproject.toml", tmp_path / "requirements"


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_a_dependency_added_to_pyproject_makes_the_locks_stale(
    lock: ModuleType, copy: tuple[Path, Path]
) -> None:
    pyproject, locks = copy
    _edit(pyproject, '"bcrypt>=4.0",', '"bcrypt>=4.0",\n    "rich>=13",')
    found = lock.problems(pyproject, locks)
    for name in ("runtime.txt", "test.txt"):
        assert f"{name}: stale, pyproject.toml changed since it was compiled" in found
        assert f"{name}: rich is not pinned" in found
    assert not any(problem.startswith("build.txt") for problem in found)


def test_a_test_dependency_makes_only_the_test_lock_stale(
    lock: ModuleType, copy: tuple[Path, Path]
) -> None:
    pyproject, locks = copy
    _edit(pyproject, '"pytest>=8",', '"pytest>=8",\n    "pytest-timeout",')
    found = lock.problems(pyproject, locks)
    assert found == [
        "test.txt: stale, pyproject.toml changed since it was compiled",
        "test.txt: pytest-timeout is not pinned",
    ]


def test_a_pin_pyproject_no_longer_allows_is_named(
    lock: ModuleType, copy: tuple[Path, Path]
) -> None:
    pyproject, locks = copy
    _edit(pyproject, '"PyYAML>=6.0"', '"PyYAML>=99"')
    found = lock.problems(pyproject, locks)
    assert any(re.match(r"runtime\.txt: PyYAML==\S+ does not satisfy PyYAML>=99", p) for p in found)


def test_a_pin_without_hashes_is_named(lock: ModuleType, copy: tuple[Path, Path]) -> None:
    pyproject, locks = copy
    runtime = locks / "runtime.txt"
    text = runtime.read_text(encoding="utf-8")
    unhashed = re.sub(
        r"(?m)^(structlog==\S+) \\\n(    --hash=\S+ \\\n)*    --hash=\S+\n", r"\1\n", text
    )
    assert unhashed != text
    runtime.write_text(unhashed, encoding="utf-8")
    assert any(
        re.match(r"runtime\.txt: structlog==\S+ has no hash", p)
        for p in lock.problems(pyproject, locks)
    )


def test_test_lock_keeps_the_runtime_versions(lock: ModuleType) -> None:
    runtime = lock._pins((LOCKS / "runtime.txt").read_text(encoding="utf-8"))
    test = lock._pins((LOCKS / "test.txt").read_text(encoding="utf-8"))
    assert {name: test[name][0] for name in runtime} == {n: v for n, (v, _) in runtime.items()}


def test_the_locks_are_for_the_image_platform(lock: ModuleType) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert lock.PYTHON_VERSION == "3.11" and "FROM python:3.11." in dockerfile
    for name in ("build.txt", "runtime.txt", "test.txt"):
        assert (
            (LOCKS / name).read_text(encoding="utf-8").startswith("# Linux x86_64, CPython 3.11.")
        )


def test_the_dockerfile_and_the_makefile_install_from_the_locks() -> None:
    dockerfile = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text(encoding="utf-8"))
    assert "pip install --require-hashes -r requirements/runtime.txt" in dockerfile
    assert "pip install --require-hashes -r requirements/build.txt" in dockerfile
    assert "pip wheel --no-deps --no-build-isolation" in dockerfile
    assert "pip install --no-deps /wheels/" in dockerfile
    dockerignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert {"!requirements/build.txt", "!requirements/runtime.txt"} <= set(dockerignore)
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    installs = [line.strip() for line in makefile.splitlines() if "pip install" in line]
    assert (
        "$(BIN)/pip install --require-hashes -r $(LOCK_BUILD) -r requirements/runtime.txt"
        in installs
    )
    assert (
        "$(BIN)/pip install --require-hashes -r $(LOCK_BUILD) -r requirements/test.txt" in installs
    )
    assert "$(BIN)/pip install --no-deps --no-build-isolation -e ." in installs
    assert not any(re.search(r"pip install (-e )?['\"]?\.", line) for line in installs)
