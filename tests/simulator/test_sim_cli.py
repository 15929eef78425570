"""`python -m exporter.simulator` as a separate process, driven through its admin API."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from datetime import UTC, datetime

import aiohttp
import pytest

from exporter.signing import sign_request
from exporter.simulator.__main__ import main


async def test_process_serves_steps_and_exits_cleanly_on_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "exporter.simulator",
        "--listen=127.0.0.1:0",
        "--seed=2",
        "--projects=p1,p2",
        "--tasks=50",
        "--batch-tasks=2",
        "--face-edge-tasks=3",
        "--scenario=incident",
        "--step-interval=0",
        "--token=t0k",
        "--access-key=AK1:SK1",
        "--iam-user=acme:ops:pw:with:colons",
        "--latency=0",
        "--no-face-edge-paging",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=20)).decode()
        match = re.search(r"url=(http://127\.0\.0\.1:\d+)", line)
        assert match, line
        assert "token=t0k" in line  # what a client needs to connect
        url = match.group(1)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/v2/p2/tasks", headers={"X-Auth-Token": "t0k"}) as r:
                assert r.status == 200 and (await r.json())["count"] == 10
            signed = sign_request("GET", f"{url}/v2/p1/tasks", {}, b"", "AK1", "SK1", _now())
            async with http.get(f"{url}/v2/p1/tasks", headers=signed) as r:
                assert r.status == 200
            login = _login_body("acme", "ops", "pw:with:colons")
            async with http.post(f"{url}/v3/auth/tokens", json=login) as r:
                assert r.status == 201
            async with http.get(f"{url}/v2/p1/services/c-face-edge/tasks?page_size=1") as r:
                assert r.status == 401
            before = await _truth(http, url)
            async with http.post(f"{url}/_sim/step") as r:
                assert (await r.json())["ticks"] == 1
            assert await _truth(http, url) != before
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.parametrize(
    "argv",
    [["--listen", "nowhere"], ["--scenario", "chaos"], ["--access-key", "no-colon"]],
)
def test_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2


def _now() -> datetime:
    return datetime.now(UTC)


def _login_body(domain: str, user: str, password: str) -> dict[str, object]:
    credentials = {"name": user, "password": password, "domain": {"name": domain}}
    return {
        "auth": {
            "identity": {"methods": ["password"], "password": {"user": credentials}},
            "scope": {"project": {"id": "p1"}},
        }
    }


async def _truth(http: aiohttp.ClientSession, url: str) -> object:
    async with http.get(f"{url}/_sim/truth/p1") as response:
        return await response.json()


def test_help_shows_every_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for default in (
        "(default: 127.0.0.1:9801)",
        "(default: sim-token)",
        "(default: p1)",
        "(default: 1)",
        "(default: demo)",
    ):
        assert default in text, default
