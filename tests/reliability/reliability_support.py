"""Helpers shared by the reliability tests (on top of tests/support.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from structlog.typing import EventDict

from exporter.service import Exporter
from exporter.settings import Config
from tests.support import Samples, make_config, serving, stop_process

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
VENV_BIN = Path(sys.executable).parent
EXPORTER_SCRIPT = VENV_BIN / "vias-exporter"

# Small, fast retry settings: 3 attempts per request, ~10 ms first backoff.
FAST: dict[str, Any] = {
    "request_timeout_seconds": 2,
    "max_retries": 2,
    "backoff_initial_seconds": 0.01,
    "backoff_max_seconds": 1.0,
    "rate_limit_per_second": 1000,
    # No pause after refused credentials, so a test can fail and recover in a few polls;
    # test_a_rejected_static_token_is_never_retried turns the pause on.
    "auth_backoff_seconds": 0,
}
ATTEMPTS = FAST["max_retries"] + 1


def fast_config(targets: Iterable[dict[str, Any]], **global_settings: Any) -> Config:
    """Targets poll the two job lists these tests count calls of, unless they say."""
    targets = [{"sources": ["tasks", "batch_tasks"], **target} for target in targets]
    return make_config(targets, **{**FAST, **global_settings})


class FakeClock:
    """The exporter's wall clock (`Exporter(config, clock=...)`), moved by hand."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Running:
    exporter: Exporter
    url: str
    session: aiohttp.ClientSession

    async def scrape(self) -> Samples:
        """GET /metrics: must answer 200 with a parseable exposition."""
        async with self.session.get(self.url + "/metrics") as response:
            assert response.status == 200, response.status
            return Samples.parse(await response.text())

    async def text(self, path: str) -> tuple[int, str]:
        async with self.session.get(self.url + path) as response:
            return response.status, await response.text()


@contextlib.asynccontextmanager
async def running_exporter(
    config: Config, clock: Callable[[], float] = time.time
) -> AsyncIterator[Running]:
    """The exporter's real web server on loopback; polls are driven by the test."""
    async with (
        Exporter(config, clock=clock) as exporter,
        serving(exporter) as url,
        aiohttp.ClientSession() as session,
    ):
        yield Running(exporter, url, session)


def poll_errors(samples: Samples, project: str, source: str) -> dict[str, float]:
    """reason -> count for one source."""
    return {
        dict(labels)["reason"]: value
        for labels, value in samples.series(
            "vias_poll_errors_total", project_id=project, source=source
        ).items()
    }


def events(logs: list[EventDict], event: str, **match: Any) -> list[EventDict]:
    """Captured structlog entries with this event whose fields include `match`."""
    return [
        entry
        for entry in logs
        if entry.get("event") == event and all(entry.get(k) == v for k, v in match.items())
    ]


# --- processes -----------------------------------------------------------------------------

_URL = re.compile(r"url=(http://127\.0\.0\.1:\d+)")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without VIAS_* settings (they would configure the exporter)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIAS_")}
    env.update(extra)
    return env


@contextlib.contextmanager
def simulator_process(*args: str, deadline: float = 15.0) -> Iterator[str]:
    """`python -m exporter.simulator` on a free loopback port; yields its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter.simulator", "--listen", "127.0.0.1:0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=clean_env(),
    )
    try:
        assert process.stdout is not None
        url = None
        end = time.monotonic() + deadline
        while url is None and time.monotonic() < end:
            line = process.stdout.readline()
            if not line:
                break
            found = _URL.search(line)
            url = found.group(1) if found else None
        assert url is not None, "the simulator did not start"
        yield url
    finally:
        stop_process(process, timeout=5)


async def wait_until(
    condition: Callable[[], bool], deadline: float = 10.0, what: str = "condition"
) -> None:
    """Wait for a condition another task makes true, up to `deadline` seconds."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)
