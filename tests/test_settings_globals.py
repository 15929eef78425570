"""The global settings from VIAS_* environment variables, as the README lists them: each
loads, a bad value names its variable, and they reach a running exporter.

| change to the code (tried, seen red) | failing test |
|---|---|
| `load_config`: `GlobalConfig()` instead of `_EnvGlobal()` | all but the README test |
| `_EnvGlobal`: `env_prefix="VIAS_GLOBAL_"` | all but the README test |
| a field added to `GlobalConfig`, no README row | test_the_readme_lists_every_global_setting |
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from exporter.lists import REGISTRY
from exporter.settings import ConfigError, load_config
from tests.support import TOKEN, RunningSimulator, Samples

ROOT = Path(__file__).resolve().parents[1]
EXPORTER = Path(sys.executable).parent / "vias-exporter"
TARGET_ENV = {"VIAS_PROJECT_ID": "p1", "VIAS_REGION": "cn-north-4", "VIAS_AUTH_TOKEN": TOKEN}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("VIAS_"):
            monkeypatch.delenv(name)
    for name, value in TARGET_ENV.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def readme_global_variables() -> set[str]:
    """The variables of the README row that ends "the global settings below"."""
    (row,) = re.findall(r"^\|(.*)\| the global settings below \|$", _readme(), re.MULTILINE)
    return set(re.findall(r"`(VIAS_\w+)`", row))


def _readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_global_setting_loads_from_its_variable(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("not checked until a connection is made\n")
    values = {
        "VIAS_MAX_AGE_INTERVALS": ("5", 5.0),
        "VIAS_PROBLEM_TASKS_LIMIT": ("17", 17),
        "VIAS_BATCH_TASK_SERIES_LIMIT": ("40", 40),
        "VIAS_LABEL_VALUE_MAX_BYTES": ("256", 256),
        "VIAS_REQUEST_TIMEOUT_SECONDS": ("7.5", 7.5),
        "VIAS_MAX_RESPONSE_BYTES": ("1048576", 1048576),
        "VIAS_MAX_RETRIES": ("6", 6),
        "VIAS_BACKOFF_INITIAL_SECONDS": ("0.25", 0.25),
        "VIAS_BACKOFF_MAX_SECONDS": ("12", 12.0),
        "VIAS_AUTH_BACKOFF_SECONDS": ("90", 90.0),
        "VIAS_AUTH_BACKOFF_MAX_SECONDS": ("900", 900.0),
        "VIAS_DETAIL_CALLS_PER_POLL": ("3", 3),
        "VIAS_RATE_LIMIT_PER_SECOND": ("3.5", 3.5),
        "VIAS_RATE_LIMIT_SCOPE": ("project", "project"),
        "VIAS_MAX_POLLS_IN_FLIGHT": ("3", 3),
        "VIAS_MAX_CONCURRENCY": ("9", 9),
        "VIAS_PAGE_WINDOW": ("6", 6),
        "VIAS_MAX_PAGES": ("77", 77),
        "VIAS_VERIFY_TLS": ("false", False),
        "VIAS_CA_FILE": (str(ca_file), ca_file),
        "VIAS_PROXY": ("http://127.0.0.1:3128/", "http://127.0.0.1:3128"),
    }
    assert set(values) == readme_global_variables()
    defaults = load_config(None, REGISTRY).global_.model_dump()
    for name, (raw, _) in values.items():
        env.setenv(name, raw)
    loaded = load_config(None, REGISTRY).global_.model_dump()
    expected = {name.removeprefix("VIAS_").lower(): value for name, (_, value) in values.items()}
    assert loaded == expected
    assert all(defaults[field] != value for field, value in expected.items())


def test_the_readme_lists_every_global_setting(env: pytest.MonkeyPatch) -> None:
    fields = load_config(None, REGISTRY).global_.model_dump()
    assert readme_global_variables() == {f"VIAS_{name.upper()}" for name in fields}


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("VIAS_MAX_CONCURRENCY", "0", "VIAS_MAX_CONCURRENCY: Input should be greater than"),
        ("VIAS_MAX_POLLS_IN_FLIGHT", "0", "VIAS_MAX_POLLS_IN_FLIGHT: Input should be greater"),
        ("VIAS_MAX_RETRIES", "11", "VIAS_MAX_RETRIES: Input should be less than"),
        ("VIAS_RATE_LIMIT_PER_SECOND", "fast", "VIAS_RATE_LIMIT_PER_SECOND: Input should be"),
        ("VIAS_VERIFY_TLS", "perhaps", "VIAS_VERIFY_TLS: Input should be a valid boolean"),
        ("VIAS_CA_FILE", "/nonexistent/ca.pem", "VIAS_CA_FILE: CA bundle file not found"),
        ("VIAS_PROXY", "not a url", "VIAS_PROXY:"),
        ("VIAS_MAX_AGE_INTERVALS", "-1", "VIAS_MAX_AGE_INTERVALS: Input should be greater"),
    ],
)
def test_a_bad_global_variable_is_named(
    env: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    env.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_config(None, REGISTRY)
    assert message in str(caught.value)
    assert TOKEN not in str(caught.value)


async def test_global_variables_reach_the_running_exporter(simulator: RunningSimulator) -> None:
    """`--once` with VIAS_MAX_PAGES=1 and VIAS_PROBLEM_TASKS_LIMIT=2: one page of 50 jobs
    listed (the cap counted), two problem jobs named."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIAS_")}
    env |= {
        **TARGET_ENV,
        "VIAS_ENDPOINT": simulator.url,
        "VIAS_SOURCES": "infer_tasks",  # 50 jobs a page, 300 jobs
        "VIAS_MAX_PAGES": "1",
        "VIAS_PROBLEM_TASKS_LIMIT": "2",
    }
    process = await asyncio.create_subprocess_exec(
        str(EXPORTER),
        "--once",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    samples = Samples.parse(out.decode())
    where = {"project_id": "p1", "source": "infer_tasks"}
    assert samples.value("vias_poll_items", **where) == 50
    assert samples.value("vias_pagination_stops_total", reason="page_cap", **where) == 1
    assert len(samples.series("vias_problem_task_info", project_id="p1")) == 2
