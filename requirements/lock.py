"""The lock files: every package the image, `make demo` and `make test` install, pinned with
hashes, for Linux x86_64 and CPython 3.11 (the image's platform and CI's).

    python requirements/lock.py            # after editing pyproject.toml (`make lock`)
    python requirements/lock.py --upgrade  # newest versions allowed (`make lock-upgrade`)
    python requirements/lock.py --check    # offline: do the locks match pyproject.toml?

- `build.txt`: pyproject's build-system.requires (setuptools), so the package builds
  without build isolation, from pinned tools.
- `runtime.txt`: project.dependencies (what the image and `make demo` install).
- `test.txt`: the runtime dependencies and the `test` extra (`make test`, `make lint`),
  constrained to runtime.txt's versions so tests run against what ships.

Compiling needs uv and PyPI; it keeps the pins it can and changes only what pyproject.toml's
change requires (--upgrade takes the newest allowed). Each file's header records a
fingerprint of the pyproject.toml lists it was compiled from: `--check` (and
tests/deploy/test_lock.py) fails when pyproject.toml changed since, when a pin lacks hashes,
or when a direct dependency's pin no longer satisfies pyproject.toml.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
LOCKS = ROOT / "requirements"
PYTHON_VERSION = "3.11"
PLATFORM = "x86_64-unknown-linux-gnu"
INDEX = "https://pypi.org/simple"
FINGERPRINT = "# pyproject.toml fingerprint: "
COMMAND = "make lock"


def _project(pyproject: Path) -> dict[str, Any]:
    return tomllib.loads(pyproject.read_text(encoding="utf-8"))


def inputs(pyproject: Path = PYPROJECT) -> dict[str, list[str]]:
    """Each lock file's requirements, as pyproject.toml states them."""
    data = _project(pyproject)
    project = data["project"]
    return {
        "build.txt": list(data["build-system"]["requires"]),
        "runtime.txt": list(project["dependencies"]),
        "test.txt": list(project["dependencies"]) + list(project["optional-dependencies"]["test"]),
    }


def fingerprint(name: str, pyproject: Path = PYPROJECT) -> str:
    """What a lock file was compiled from: its requirements, the Python and the platform."""
    source = {
        "requirements": inputs(pyproject)[name],
        "requires-python": _project(pyproject)["project"]["requires-python"],
        "python": PYTHON_VERSION,
        "platform": PLATFORM,
    }
    canonical = json.dumps(source, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _uv() -> list[str]:
    venv_uv = Path(sys.executable).parent / "uv"
    if venv_uv.exists():
        return [str(venv_uv)]
    return [sys.executable, "-m", "uv"]


def compile_lock(name: str, *, upgrade: bool) -> None:
    target = LOCKS / name
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "requirements.in"
        source.write_text("\n".join(inputs()[name]) + "\n", encoding="utf-8")
        command = [
            *_uv(),
            "pip",
            "compile",
            "--quiet",
            "--no-config",
            "--index-url",
            INDEX,
            "--generate-hashes",
            "--python-version",
            PYTHON_VERSION,
            "--python-platform",
            PLATFORM,
            "--custom-compile-command",
            COMMAND,
            "--output-file",
            str(target),
            str(source),
        ]
        if name == "test.txt":
            command += ["--constraints", str(LOCKS / "runtime.txt")]
        if upgrade:
            command.append("--upgrade")
        # Only PyPI: a machine's pip or uv configuration (local indexes, find-links) must
        # not leave its files' hashes in the lock.
        env = {key: value for key, value in os.environ.items() if not key.startswith("UV_")}
        subprocess.run(command, check=True, env=env, cwd=ROOT)
    text = target.read_text(encoding="utf-8")
    # uv names the temporary input file in the annotations: name pyproject.toml instead.
    text = text.replace(str(source), "pyproject.toml")
    header = (
        f"# Linux x86_64, CPython {PYTHON_VERSION}. "
        f"Do not edit: `{COMMAND}` (README, Development).\n"
        f"{FINGERPRINT}{fingerprint(name)}\n"
    )
    target.write_text(header + text, encoding="utf-8")


def _pins(text: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a compiled requirements file."""
    joined = re.sub(r"\\\n", " ", text)
    pins: dict[str, tuple[str, list[str]]] = {}
    for line in joined.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.match(r"([A-Za-z0-9._-]+)==(\S+)(.*)", line)
        if match is None:
            raise ValueError(f"not a pinned requirement: {line!r}")
        name, version, rest = match.groups()
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", rest)
        pins[_normalize(name)] = (version, hashes)
    return pins


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def problems(pyproject: Path = PYPROJECT, locks: Path = LOCKS) -> list[str]:
    """Why the lock files do not match pyproject.toml (empty: they do)."""
    from packaging.requirements import Requirement

    found: list[str] = []
    pins: dict[str, dict[str, tuple[str, list[str]]]] = {}
    for name, requirements in inputs(pyproject).items():
        path = locks / name
        if not path.exists():
            found.append(f"{name}: missing")
            continue
        text = path.read_text(encoding="utf-8")
        recorded = re.search(rf"(?m)^{re.escape(FINGERPRINT)}(\S+)$", text)
        if recorded is None or recorded.group(1) != fingerprint(name, pyproject):
            found.append(f"{name}: stale, pyproject.toml changed since it was compiled")
        try:
            pins[name] = _pins(text)
        except ValueError as error:
            found.append(f"{name}: {error}")
            continue
        for package, (version, hashes) in pins[name].items():
            if not hashes:
                found.append(f"{name}: {package}=={version} has no hash")
        for requirement in map(Requirement, requirements):
            pin = pins[name].get(_normalize(requirement.name))
            if pin is None:
                found.append(f"{name}: {requirement.name} is not pinned")
            elif not requirement.specifier.contains(pin[0], prereleases=True):
                found.append(f"{name}: {requirement.name}=={pin[0]} does not satisfy {requirement}")
    runtime, test = pins.get("runtime.txt", {}), pins.get("test.txt", {})
    for package, (version, _) in runtime.items():
        if package in test and test[package][0] != version:
            found.append(f"test.txt: {package}=={test[package][0]}, runtime.txt has {version}")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check, offline")
    parser.add_argument("--upgrade", action="store_true", help="take the newest allowed")
    args = parser.parse_args()
    if not args.check:
        for name in ("build.txt", "runtime.txt", "test.txt"):
            compile_lock(name, upgrade=args.upgrade)
    found = problems()
    for problem in found:
        print(f"requirements/{problem}", file=sys.stderr)
    if found and args.check:
        print(f"run `{COMMAND}` (README, Development)", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
