"""The wheel (and so the image, which installs it) carries what runs in production: the
exporter and the simulator `--demo` needs, not the benchmark suite or the tests."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_holds_only_the_exporter_package(tmp_path: Path) -> None:
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--wheel-dir"]
    subprocess.run(
        [*build, str(tmp_path), str(ROOT)],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("vias_exporter-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_levels = {name.split("/")[0] for name in names if not name.startswith("vias_exporter-")}
    assert top_levels == {"exporter"}
    assert "exporter/simulator/server.py" in names and "exporter/lists/tasks.py" in names
