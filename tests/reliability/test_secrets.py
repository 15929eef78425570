"""Secrets never leak: every auth mode driven through failures, then the logs (console and
JSON), the metrics, error messages, the landing page and `--check-config` are searched for
the token, passwords, secret keys and the IAM tokens the simulator issued."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from exporter.errors import ViasError
from exporter.logs import configure_logging
from exporter.paginator import pages
from exporter.poller import SourcePoller
from exporter.simulator import Fault
from tests.reliability.reliability_support import (
    EXPORTER_SCRIPT,
    ROOT,
    Running,
    clean_env,
    fast_config,
    running_exporter,
)
from tests.support import (
    ACCESS_KEY,
    DOMAIN,
    PASSWORD,
    SECRET_KEY,
    SECRETS,
    TOKEN,
    USER,
    RunningSimulator,
    target,
)

WRONG_PASSWORD = "wr0ng-pa55-s3cr3t"
WRONG_SECRET_KEY = "sk-wr0ng-s3cr3t-9876543210"
ALL_SECRETS = (*SECRETS, WRONG_PASSWORD, WRONG_SECRET_KEY)
ISSUED_TOKEN = re.compile(r"MIIsim[0-9a-f]{8,}")  # the simulator's IAM tokens


@dataclass
class StderrLogs:
    format: str
    stream: io.StringIO


@pytest.fixture
def stderr_logs(request: pytest.FixtureRequest) -> Iterator[StderrLogs]:
    """The exporter's own logging set-up (as the CLI does) at debug level, writing to what
    is sys.stderr when it is configured: here a buffer the test reads."""
    stream = io.StringIO()
    real, sys.stderr = sys.stderr, stream
    try:
        configure_logging("debug", request.param)
    finally:
        sys.stderr = real
    yield StderrLogs(request.param, stream)
    structlog.reset_defaults()


def assert_no_secret(where: str, text: str) -> None:
    for secret in ALL_SECRETS:
        assert secret not in text, f"{secret!r} leaked into {where}"
    assert not ISSUED_TOKEN.search(text), f"an IAM token leaked into {where}"


async def collect(running: Running, texts: list[tuple[str, str]]) -> None:
    """Metrics, landing page and every poller's last error, as they are now."""
    for path in ("/metrics", "/"):
        status, body = await running.text(path)
        assert status == 200
        texts.append((path, body))
    for poller in running.exporter.pollers:
        texts.append(("poller.state.last_error", str(poller.state.last_error)))


async def raised(poller: SourcePoller[Any, Any], texts: list[tuple[str, str]]) -> None:
    """The typed error of a listing, as a caller sees it."""
    try:
        async for _ in pages(poller.transport, poller.vias_list):
            pass
    except ViasError as error:
        texts.append(("str(error)", f"{error} {error!r} {error.__dict__}"))


@pytest.mark.parametrize("stderr_logs", ["console", "json"], indirect=True)
async def test_no_secret_in_logs_metrics_errors_or_pages(
    simulator: RunningSimulator, stderr_logs: StderrLogs
) -> None:
    sim = simulator.sim
    url = simulator.url
    texts: list[tuple[str, str]] = []

    # 1. Static token: a 401, 5xx (JSON and HTML), a cut body.
    config = fast_config([target(url, "p1")])
    async with running_exporter(config) as running:
        for fault in (
            Fault("unauthorized", match="/p1/"),
            Fault("server_error_json", match="/p1/"),
            Fault("server_error_html", match="/p1/"),
            Fault("cut_json", match="/p1/"),
        ):
            sim.faults.add(fault)
            await running.exporter.poll_all_once()
            await raised(running.exporter.pollers[0], texts)
            await collect(running, texts)
            sim.faults.clear()
        await running.exporter.poll_all_once()

    # 2. IAM password: a wrong password, IAM answering 5xx, tokens expiring, a 401.
    config = fast_config(
        [
            target(url, "p1", auth="password", password=WRONG_PASSWORD),
            target(url, "p2", auth="password"),
        ]
    )
    async with running_exporter(config) as running:
        sim.faults.add(Fault("server_error_html", match="/v3/auth/tokens", times=2))
        await running.exporter.poll_all_once()  # p2's login fails too (then cools down)
        await collect(running, texts)
    async with running_exporter(config) as running:
        await running.exporter.poll_all_once()
        sim.expire_tokens()
        await running.exporter.poll_all_once()  # one re-login
        sim.faults.add(Fault("unauthorized", match="/p2/"))
        await running.exporter.poll_all_once()
        for poller in running.exporter.pollers:
            await raised(poller, texts)
        await collect(running, texts)
        sim.faults.clear()

    # 3. AK/SK: a wrong secret key (bad signature), clock skew, 5xx.
    config = fast_config(
        [
            target(url, "p1", auth="aksk", secret_key=WRONG_SECRET_KEY),
            target(url, "p2", auth="aksk"),
        ]
    )
    async with running_exporter(config) as running:
        await running.exporter.poll_all_once()
        sim.clock_offset = timedelta(minutes=30)
        await running.exporter.poll_all_once()
        sim.clock_offset = timedelta(0)
        sim.faults.add(Fault("server_error_json", match="/p2/"))
        await running.exporter.poll_all_once()
        for poller in running.exporter.pollers:
            await raised(poller, texts)
        await collect(running, texts)
        sim.faults.clear()

    log_text = stderr_logs.stream.getvalue()
    # The failures did happen and were logged, in the chosen format.
    for needle in ("APIGW.0301", "VIAS.00010006", "502 Bad Gateway", "verify aksk signature"):
        assert needle in log_text, needle
    assert "username or password is wrong" in log_text
    assert "iam login succeeded" in log_text
    lines = [line for line in log_text.splitlines() if line.strip()]
    assert len(lines) > 20
    if stderr_logs.format == "json":
        assert all(json.loads(line)["event"] for line in lines)  # every line is JSON
    assert_no_secret("logs", log_text)
    for where, text in texts:
        assert_no_secret(where, text)
    assert {where for where, _ in texts} >= {
        "/metrics",
        "/",
        "poller.state.last_error",
        "str(error)",
    }


def _config_with_secrets(tmp_path: Path, *, broken: bool) -> Path:
    targets: list[dict[str, Any]] = [
        {"project_id": "p1", "endpoint": "http://127.0.0.1:9", "auth_token": TOKEN},
        {
            "project_id": "p2",
            "endpoint": "http://127.0.0.1:9",
            "iam_endpoint": "http://127.0.0.1:9",
            "username": USER,
            "password": PASSWORD,
            "domain_name": DOMAIN,
        },
        {
            "project_id": "p3",
            "endpoint": "http://127.0.0.1:9",
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
        },
    ]
    if broken:
        targets[0]["secret_key"] = SECRET_KEY  # two auth modes
        targets[1]["poll_interval_seconds"] = -1
        targets[2]["password"] = WRONG_PASSWORD  # two auth modes
        targets[2]["endpoint"] = f"http://user:{WRONG_SECRET_KEY}@ bad url"
    path = tmp_path / "config.yml"
    path.write_text(json.dumps({"targets": targets}), encoding="utf-8")
    return path


@pytest.mark.parametrize("broken", [False, True], ids=["valid", "invalid"])
def test_check_config_never_prints_a_secret(tmp_path: Path, broken: bool) -> None:
    path = _config_with_secrets(tmp_path, broken=broken)
    result = subprocess.run(
        [str(EXPORTER_SCRIPT), "--check-config", "--config.file", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env=clean_env(),
    )
    assert result.returncode == (2 if broken else 0), result.stderr
    assert "Traceback" not in result.stderr
    output = result.stdout + result.stderr
    if broken:
        assert "targets[0]" in output and "targets[1].poll_interval_seconds" in output
    else:
        assert "auth token" in output and "auth password" in output and "auth aksk" in output
    assert_no_secret("--check-config", output)
