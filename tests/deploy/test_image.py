"""The Dockerfile, built and run for real, without a daemon or a registry.

No container registry is reachable here, so the `FROM` image is made: a Debian bookworm
root filesystem with python3 and python3-venv (debootstrap), a `python` on the PATH where the
official image has it, and the machine's CA bundle (pip in the builder reaches PyPI through
whatever TLS the machine trusts), committed under the Dockerfile's exact `FROM` name. Then
buildah builds the real Dockerfile against it (the builder installs requirements/*.txt,
hash-checked, from PyPI) and runs the image, as its own non-root user, on the host's
loopback: `--version`, `--check-config` with deploy/config.example.yml and its secret files
mounted where Kubernetes mounts them, and `--demo` answering `/-/ready` and `/metrics`.

Needs root, buildah and debootstrap (Debian packages; `make system-deps` and .ci/run install
them); skipped with the reason otherwise (so failed where every suite must run). The root
filesystem is cached in .cache/image-test/ (git-ignored), so a second run skips debootstrap;
the image store lives in a temporary directory, removed at the end. About 1 minute with the
cache, 2 without (the 40 s of debootstrap), on 2 cores.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import tarfile
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.stack import ROOT

DOCKERFILE = ROOT / "Dockerfile"
EXAMPLE_CONFIG = ROOT / "deploy" / "config.example.yml"
RUNTIME_LOCK = ROOT / "requirements" / "runtime.txt"
CACHE = ROOT / ".cache" / "image-test"
MIRROR = os.environ.get("VIAS_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PACKAGES = "python3,python3-venv,ca-certificates"
DEBOOTSTRAP = ["--variant=minbase", f"--include={PACKAGES}", "bookworm"]
# Left out of the stand-in: documentation and the package cache weigh without running.
NOT_IN_BASE = re.compile(r"^\./(dev|proc|sys|var/cache/apt/archives|usr/share/(doc|man|locale))/.")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
IMAGE = "localhost/vias-exporter:image-test"
UID = 65532
# Where config.example.yml reads its secrets: /var/run/secrets/vias, and /var/run is a
# symbolic link to /run in Debian, so the mount goes to the link's target.
SECRETS = "/run/secrets/vias"


def _from_image() -> str:
    """The base image of the Dockerfile's stages (one name for all of them)."""
    names = {
        line.split()[1]
        for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
        if line.upper().startswith("FROM ")
    }
    (name,) = names
    return name


def _fully_qualified(name: str) -> str:
    """docker.io/library/NAME: what a short name in FROM resolves to without a registry."""
    return name if "/" in name.split(":")[0] else f"docker.io/library/{name}"


@dataclass
class Buildah:
    """buildah with an image store of its own, so the tests leave the machine's alone."""

    root: Path
    driver: str

    def command(self, *args: str) -> list[str]:
        return [
            "buildah",
            "--root",
            str(self.root / "storage"),
            "--runroot",
            str(self.root / "run"),
            "--storage-driver",
            self.driver,
            *args,
        ]

    def __call__(self, *args: str, timeout: float = 120) -> str:
        result = subprocess.run(
            self.command(*args), capture_output=True, text=True, timeout=timeout, check=False
        )
        assert result.returncode == 0, f"buildah {' '.join(args)}:\n{result.stderr[-4000:]}"
        return result.stdout

    def run(self, container: str, *command: str, volumes: tuple[str, ...] = ()) -> str:
        options = [arg for volume in volumes for arg in ("--volume", volume)]
        return self(
            "run", "--isolation", "chroot", "--network", "host", *options, container, "--", *command
        )


def _require_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("the image test needs root (debootstrap, buildah's chroot isolation)")
    for tool in ("buildah", "debootstrap"):
        if shutil.which(tool, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin") is None:
            pytest.skip(f"{tool} not installed (Debian package {tool}; `make system-deps`)")


def _timed(timings: dict[str, float], what: str) -> contextlib.AbstractContextManager[None]:
    @contextlib.contextmanager
    def timer() -> Iterator[None]:
        start = time.monotonic()
        yield
        timings[what] = round(time.monotonic() - start, 1)

    return timer()


def _base_rootfs(tmp: Path) -> Path:
    """A tar of the stand-in's root filesystem, made once and kept in .cache/image-test/."""
    key = hashlib.sha256(" ".join([*DEBOOTSTRAP, MIRROR]).encode()).hexdigest()[:12]
    tar = CACHE / f"bookworm-python3-{key}.tar"
    if tar.exists():
        return tar
    target = tmp / "rootfs"
    debootstrap = shutil.which("debootstrap", path="/usr/sbin:/sbin:/usr/bin") or "debootstrap"
    result = subprocess.run(
        [debootstrap, *DEBOOTSTRAP, str(target), MIRROR],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"debootstrap:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = tar.with_suffix(".partial")
    with tarfile.open(partial, "w") as archive:
        archive.add(target, arcname=".", filter=lambda m: None if NOT_IN_BASE.match(m.name) else m)
    partial.rename(tar)
    shutil.rmtree(target, ignore_errors=True)
    return tar


def _commit_base(buildah: Buildah, tar: Path, tmp: Path, name: str) -> None:
    """The stand-in for the official image: python at /usr/local/bin/python as there, and
    pip trusting the system's CA bundle (the official image's pip uses its own certifi)."""
    container = buildah("from", "scratch").strip()
    buildah("add", container, str(tar), "/")
    pip_conf = tmp / "pip.conf"
    pip_conf.write_text(f"[global]\ncert = {CA_BUNDLE}\n", encoding="utf-8")
    buildah("copy", container, str(pip_conf), "/etc/pip.conf")
    if CA_BUNDLE.exists():  # the machine's trust, e.g. a TLS-inspecting proxy's CA
        buildah("copy", container, str(CA_BUNDLE), str(CA_BUNDLE))
    buildah("run", "--isolation", "chroot", container, "--", "ln", "-s", "/usr/bin/python3",
            "/usr/local/bin/python")  # fmt: skip
    buildah(
        "config",
        "--env",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--env",
        "LANG=C.UTF-8",
        "--cmd",
        "python3",
        container,
    )
    buildah("commit", "--quiet", "--rm", container, _fully_qualified(name))


@pytest.fixture(scope="session")
def image_timings() -> Iterator[dict[str, float]]:
    timings: dict[str, float] = {}
    yield timings
    if timings:
        print(f"\nimage test timings (s): {timings}")


@pytest.fixture(scope="session")
def buildah(
    tmp_path_factory: pytest.TempPathFactory, image_timings: dict[str, float]
) -> Iterator[Buildah]:
    _require_tools()
    tmp = tmp_path_factory.mktemp("image")
    filesystems = Path("/proc/filesystems").read_text(encoding="utf-8")
    tool = Buildah(tmp, "overlay" if "overlay" in filesystems else "vfs")
    try:
        with _timed(image_timings, "base rootfs (debootstrap or cache)"):
            tar = _base_rootfs(tmp)
        with _timed(image_timings, "base image commit"):
            _commit_base(tool, tar, tmp, _from_image())
        yield tool
    finally:
        for args in (("rm", "--all"), ("rmi", "--all", "--force")):
            subprocess.run(tool.command(*args), capture_output=True, timeout=120, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def image(buildah: Buildah, image_timings: dict[str, float]) -> str:
    with _timed(image_timings, "buildah build"):
        buildah(
            "build",
            "--isolation",
            "chroot",
            "--pull=never",  # the stand-in, never a registry
            "--format",
            "docker",  # keeps HEALTHCHECK (OCI has no field for it)
            "--file",
            str(DOCKERFILE),
            "--tag",
            IMAGE,
            str(ROOT),
            timeout=900,
        )
    return IMAGE


@pytest.fixture(scope="session")
def container(buildah: Buildah, image: str) -> str:
    return buildah("from", "--pull-never", image).strip()


def _config(buildah: Buildah, image: str) -> dict[str, Any]:
    (inspected,) = (json.loads(buildah("inspect", "--type", "image", image))["Docker"]["config"],)
    return inspected  # type: ignore[no-any-return]


def test_the_image_runs_as_the_dockerfile_says(buildah: Buildah, image: str) -> None:
    config = _config(buildah, image)
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["vias-exporter"]
    assert "9875/tcp" in config["ExposedPorts"]
    assert "/-/healthy" in " ".join(config["Healthcheck"]["Test"])
    assert any(env.startswith("PATH=/opt/venv/bin:") for env in config["Env"])


def test_the_image_runs_as_its_non_root_user(buildah: Buildah, container: str) -> None:
    out = buildah.run(container, "python", "-c", "import os; print(os.getuid(), os.getgid())")
    assert out.split() == [str(UID), str(UID)]


def test_the_image_holds_the_locked_runtime_and_no_build_leftovers(
    buildah: Buildah, container: str
) -> None:
    listing = "import importlib.metadata as m, json; print(json.dumps({d.name.lower().replace('_', '-'): d.version for d in m.distributions()}))"  # noqa: E501
    installed = json.loads(buildah.run(container, "python", "-c", listing))
    locked = dict(re.findall(r"(?m)^([a-z0-9._-]+)==(\S+)", RUNTIME_LOCK.read_text()))
    assert {name: installed.get(name) for name in locked} == locked
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert installed["vias-exporter"] == project["version"]
    # what Python's venv brings besides: pip (3.11's venv also setuptools)
    assert set(installed) - set(locked) <= {"vias-exporter", "pip", "setuptools"}
    out = buildah.run(container, "sh", "-c", "ls -d /src /wheels /opt/build 2>/dev/null; true")
    assert out.strip() == "", "builder files in the final image"


def test_version(buildah: Buildah, container: str) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert buildah.run(container, "vias-exporter", "--version").strip() == (
        f"vias-exporter {project['version']}"
    )


def test_check_config_with_the_example_config(
    buildah: Buildah, container: str, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in ("token", "password", "secret-key"):  # the files config.example.yml reads
        (secrets / name).write_text("not-a-real-secret\n", encoding="utf-8")
        (secrets / name).chmod(0o644)
    out = buildah.run(
        container,
        "vias-exporter",
        "--config.file",
        "/etc/vias-exporter/config.yml",
        "--check-config",
        volumes=(f"{secrets}:{SECRETS}:ro", f"{EXAMPLE_CONFIG}:/etc/vias-exporter/config.yml:ro"),
    )
    assert out.startswith("configuration OK: 3 target(s)"), out
    assert "not-a-real-secret" not in out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


def test_demo_answers_ready_and_metrics(
    buildah: Buildah, container: str, image_timings: dict[str, float]
) -> None:
    port = _free_port()
    command = buildah.command(
        "run", "--isolation", "chroot", "--network", "host", container, "--",
        "vias-exporter", "--demo", "--web.listen-address", f"127.0.0.1:{port}",
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    start = time.monotonic()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        status = 0
        while time.monotonic() - start < 60 and process.poll() is None:
            with contextlib.suppress(OSError):
                status, _ = _get(f"{base}/-/ready")
                if status == 200:
                    break
            time.sleep(0.3)
        image_timings["--demo ready"] = round(time.monotonic() - start, 1)
        assert status == 200, f"/-/ready answered {status}; exit code {process.poll()}"
        status, metrics = _get(f"{base}/metrics")
        assert status == 200
        assert re.search(r'(?m)^vias_up\{.*project_id="[^"]+".*\} 1(\.0)?$', metrics), metrics[
            :2000
        ]
        assert re.search(r"(?m)^vias_tasks\{.*\} [1-9]", metrics), "no simulated jobs counted"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 15)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(timeout=20)
