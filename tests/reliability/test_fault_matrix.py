"""The fault matrix: every way the network, the gateway, IAM or VIAS can misbehave, against
the simulator over real HTTP, and what users must see for each.

Every case checks the same promises: `/metrics` keeps answering; the other projects and
sources keep their data; `vias_up`, `vias_poll_errors_total{reason}`,
`vias_api_requests_total{code}` and the logs (with error_code and request_id) say what
happened; a transient fault (`times=1`) is recovered within the same poll; and the API is
never hammered (calls counted in `sim.requests`). Polls are driven with `poll_all_once()`.
docs/reliability.md lists the cases as a table.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from datetime import timedelta
from typing import Any

import pytest
from structlog.typing import EventDict

from exporter.simulator import Fault, FaultKind, RequestRecord, Simulator
from tests.reliability.reliability_support import (
    ATTEMPTS,
    FakeClock,
    Running,
    events,
    fast_config,
    poll_errors,
    running_exporter,
    wait_until,
)
from tests.support import RunningSimulator, Samples, free_port, target

TASKS = "/v2/{project_id}/tasks"
BATCH = "/v2/{project_id}/batch-tasks"
INFER = "/v1/{project_id}/infer/tasks"
IAM = "/v3/auth/tokens"
ALL_PAIRS = [(p, s) for p in ("p1", "p2") for s in ("tasks", "batch_tasks")]


def calls(sim: Simulator, part: str, method: str = "GET") -> list[RequestRecord]:
    """Requests the simulator received whose path contains `part`."""
    return [r for r in sim.requests if part in r.path and r.method == method]


def api_requests(samples: Samples, project: str, endpoint: str, code: str) -> float:
    value = samples.value(
        "vias_api_requests_total", project_id=project, endpoint=endpoint, code=code
    )
    return value or 0.0


def has_data(samples: Samples, project: str, source: str) -> bool:
    if source == "batch_tasks":
        return bool(samples.series("vias_batch_task_info", project_id=project))
    return bool(samples.series("vias_tasks", project_id=project, source=source))


def assert_healthy(samples: Samples, pairs: list[tuple[str, str]]) -> None:
    for project, source in pairs:
        assert samples.value("vias_up", project_id=project, source=source) == 1, (project, source)
        assert has_data(samples, project, source), (project, source)
        assert poll_errors(samples, project, source) == {}, (project, source)


def assert_failed(
    samples: Samples, project: str, source: str, reason: str, polls: int = 1, data: bool = False
) -> None:
    assert samples.value("vias_up", project_id=project, source=source) == 0
    assert poll_errors(samples, project, source) == {reason: polls}
    assert has_data(samples, project, source) is data


def auth_skips(samples: Samples, project: str, source: str) -> float:
    """Polls skipped (nothing sent) while the credentials' cool-down lasts."""
    value = samples.value(
        "vias_poll_skips_total", project_id=project, source=source, reason="auth_cooldown"
    )
    return value or 0.0


async def serving_ok(running: Running) -> Samples:
    """The exporter still answers health and metrics; returns the parsed metrics."""
    status, _ = await running.text("/-/healthy")
    assert status == 200
    return await running.scrape()


async def timed_poll(running: Running) -> float:
    """Poll every source once; the seconds it took."""
    started = time.monotonic()
    await running.exporter.poll_all_once()
    return time.monotonic() - started


def two_projects(url: str, **fields: Any) -> list[dict[str, Any]]:
    return [target(url, "p1", **fields), target(url, "p2", **fields)]


# --- the network ---------------------------------------------------------------------------


async def test_connection_refused_fails_that_project_only(
    simulator: RunningSimulator, logs: list[EventDict]
) -> None:
    """A closed loopback port: `connection`, 3 attempts per request, the other project fine."""
    dead = f"http://127.0.0.1:{free_port()}"
    config = fast_config([target(simulator.url, "p1"), target(dead, "p2")])
    async with running_exporter(config) as running:
        await running.exporter.poll_all_once()
        samples = await serving_ok(running)
    assert_healthy(samples, [("p1", "tasks"), ("p1", "batch_tasks")])
    for source, endpoint in (("tasks", TASKS), ("batch_tasks", BATCH)):
        assert_failed(samples, "p2", source, "connection")
        assert api_requests(samples, "p2", endpoint, "connection_error") == ATTEMPTS
        (failure,) = events(logs, "poll failed", project_id="p2", source=source)
        assert failure["reason"] == "connection"
        assert "ClientConnectorError" in failure["error"]
    assert calls(simulator.sim, "/p2/") == []
    assert len(events(logs, "retrying request")) == 2 * (ATTEMPTS - 1)


async def test_dns_failure_fails_fast_without_network(
    simulator: RunningSimulator, logs: list[EventDict], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `.invalid` host: `connection`; resolution is answered in-process (no DNS query
    leaves the machine) and counted: at most 3 lookups per request."""
    real = socket.getaddrinfo
    lookups: list[str] = []

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if str(host).endswith(".invalid"):
            lookups.append(str(host))
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    config = fast_config([target(simulator.url, "p1"), target("http://vias.invalid", "p2")])
    async with running_exporter(config) as running:
        await running.exporter.poll_all_once()
        samples = await serving_ok(running)
    assert_healthy(samples, [("p1", "tasks"), ("p1", "batch_tasks")])
    for source in ("tasks", "batch_tasks"):
        assert_failed(samples, "p2", source, "connection")
        (failure,) = events(logs, "poll failed", project_id="p2", source=source)
        assert "vias.invalid" in failure["error"]
        assert "DNS" in failure["error"] or "Name or service" in failure["error"]
        assert (
            api_requests(samples, "p2", TASKS if source == "tasks" else BATCH, "connection_error")
            == ATTEMPTS
        )
    # aiohttp shares one lookup between concurrent requests to the same host
    assert set(lookups) == {"vias.invalid"} and ATTEMPTS <= len(lookups) <= 2 * ATTEMPTS


@pytest.mark.parametrize("kind", ["latency", "slow_body"])
async def test_timeouts_are_retried_then_reported(
    simulator: RunningSimulator, logs: list[EventDict], kind: FaultKind
) -> None:
    """Slow headers or a body that stalls halfway, beyond request_timeout_seconds:
    `timeout` after 3 attempts; the source's other data and project unaffected."""
    simulator.sim.faults.add(Fault(kind, match="/p1/tasks", seconds=1.5))
    config = fast_config(two_projects(simulator.url), request_timeout_seconds=0.3)
    async with running_exporter(config) as running:
        elapsed = await timed_poll(running)
        samples = await serving_ok(running)
    assert_failed(samples, "p1", "tasks", "timeout")
    assert_healthy(samples, [pair for pair in ALL_PAIRS if pair != ("p1", "tasks")])
    assert len(calls(simulator.sim, "/p1/tasks")) == ATTEMPTS
    assert api_requests(samples, "p1", TASKS, "timeout") == ATTEMPTS
    assert elapsed < ATTEMPTS * 0.3 + 1.0  # each attempt cut at the timeout
    (failure,) = events(logs, "poll failed", project_id="p1", source="tasks")
    assert failure["reason"] == "timeout" and "within 0.3s" in failure["error"]


@pytest.mark.parametrize("kind", ["latency", "slow_body"])
async def test_transient_timeout_recovers_within_the_poll(
    simulator: RunningSimulator, kind: FaultKind
) -> None:
    simulator.sim.faults.add(Fault(kind, match="/p1/tasks", seconds=1.5, times=1))
    config = fast_config(two_projects(simulator.url), request_timeout_seconds=0.3)
    async with running_exporter(config) as running:
        await running.exporter.poll_all_once()
        samples = await serving_ok(running)
    assert_healthy(samples, ALL_PAIRS)
    assert len(calls(simulator.sim, "/p1/tasks")) == 2
    assert api_requests(samples, "p1", TASKS, "timeout") == 1
    assert api_requests(samples, "p1", TASKS, "200") == 1


# --- the gateway and VIAS ------------------------------------------------------------------

SERVER_ERRORS = {
    # fault, the code exported, the error_code logged, text the error must contain
    "html": (Fault("server_error_html", match="/p1/tasks", status=502), "502", None, "502 Bad"),
    "json": (Fault("server_error_json", match="/p1/tasks"), "500", "VIAS.00010006", "Internal"),
}


@pytest.mark.parametrize("case", SERVER_ERRORS)
async def test_5xx_is_retried_a_bounded_number_of_times(
    simulator: RunningSimulator, logs: list[EventDict], case: str
) -> None:
    """5xx (an nginx HTML page or a VIAS JSON error): `server_error` after 3 attempts; the
    log names the request (request_id, from the body or the X-Request-Id header) and the
    HTML is reduced to a tag-free excerpt."""
    fault, code, error_code, text = SERVER_ERRORS[case]
    simulator.sim.faults.add(fault)
    config = fast_config(two_projects(simulator.url))
    async with running_exporter(config) as running:
        await running.exporter.poll_all_once()
        samples = await serving_ok(running)
        assert running.exporter.pollers[0].state.last_error is not None
    assert_failed(samples, "p1", "tasks", "server_error")
    assert_healthy(samples, [pair for pair in ALL_PAIRS if pair != ("p1", "tasks")])
    assert len(calls(simulator.sim, "/p1/tasks")) == ATTEMPTS
    assert api_requests(samples, "p1", TASKS, code) == ATTEMPTS
    (failure,) = events(logs, "poll failed", project_id="p1", source="tasks")
    assert failure["error_code"] == error_code
    assert failure["request_id"] and len(failure["request_id"]) == 32
    assert text in failure["error"] and "<" not in failure["error"]


@pytest.mark.parametrize("case", SERVER_ERRORS)
async def test_one_5xx_recovers_within_the_poll(simulator: RunningSimulator, case: str) -> None:
    fault, code, _, _ = SERVER_ERRORS[case]
    fault.times = 1
    simulator.sim.faults.add(fault)
    config = fast_config(two_projects(simulator.url))
    async with running_exporter(config) as running:
        await running.exporter.poll_all_once()
        samples = await serving_ok(running)
    assert_healthy(samples, ALL_PAIRS)
    assert [r.status for r in calls(simulator.sim, "/p1/tasks")] == [int(code), 200]


async def test_429_honours_retry_after_and_recovers(simulator: RunningSimulator) -> None:
    """429 APIGW.0308 with Retry-After: 0.4: the retry waits that long, then succeeds."""
    simulator.sim.faults.add(Fault("throttle", match="/p1/tasks", retry_after=0.4, times=1))
    config = fast_config(two_projects(simulator.url))
    async with running_exporter(config) as running:
        elapsed = await timed_poll(running)
        samples = await serving_ok(running)
    assert_healthy(samples, ALL_PAIRS)
    assert [r.status for r in calls(simulator.sim, "/p1/tasks")] == [429, 200]
    assert elapsed >= 0.4


@pytest.mark.parametrize("retry_after", [None, 0.1])
async def test_429_throughout_is_reported_as_throttled(
    simulator: RunningSimulator, logs: list[EventDict], retry_after: float | None
) -> None:
    """Throttled on every attempt, with or without Retry-After: `throttled` after 3
    attempts, backing off between them (never faster than Retry-After says)."""
    simulator.sim.faults.add(Fault("throttle", match="/p1/tasks", retry_after=retry_after))
    config = fast_config(two_projects(simulator.url))
    async with running_exporter(config) as running:
        elapsed = await timed_poll(running)
        samples = await serving_ok(running)
    assert_failed(samples, "p1", "tasks", "throttled")
    assert_healthy(samples, [pair for pair in ALL_PAIRS if pair != ("p1", "tasks")])
    assert api_requests(samples, "p1", TASKS, "429") == ATTEMPTS
    assert len(calls(simulator.sim, "/p1/tasks")) == ATTEMPTS
    waits = [e["wait_seconds"] for e in events(logs, "retrying request")]
    assert len(waits) == ATTEMPTS - 1 and all(w > 0 for w in waits)
    if retry_after is not None:
        assert waits == [retry_after] * (ATTEMPTS - 1)
        assert elapsed >= retry_after * (ATTEMPTS - 1)
    (failure,) = events(logs, "poll failed", project_id="p1", source="tasks")
    assert failure["error_code"] == "APIGW.0308" and failure["request_id"]


async def test_cut_json_once_is_retried_within_the_poll(simulator: RunningSimulator) -> None:
    simulator.sim.faults.add(Fault("cut_json", match="/p1/tasks", times=1))
    config = fast_config(two_projects(simulator.url))
    async with running_exporter(config) as running:
        await running.exporter.poll_all_once()
        samples = await serving_ok(running)
    assert_healthy(samples, ALL_PAIRS)
    assert len(calls(simulator.sim, "/p1/tasks")) == 2
    assert api_requests(samples, "p1", TASKS, "200") == 2


async def test_cut_json_every_time_is_a_bad_response(
    simulator: RunningSimulator, logs: list[EventDict]
) -> None:
    simulator.sim.faults.add(Fault("cut_json", match="/p1/tasks"))
    config = fast_config(two_projects(simulator.url))
    async with running_exporter(config) as running:
        await running.exporter.poll_all_once()
        samples = await serving_ok(running)
    assert_failed(samples, "p1", "tasks", "bad_response")
    assert_healthy(samples, [pair for pair in ALL_PAIRS if pair != ("p1", "tasks")])
    assert len(calls(simulator.sim, "/p1/tasks")) == ATTEMPTS
    (failure,) = events(logs, "poll failed", project_id="p1", source="tasks")
    assert "not valid JSON" in failure["error"]


async def test_wrong_shape_is_not_retried_and_keeps_the_last_good_data(
    simulator: RunningSimulator, logs: list[EventDict]
) -> None:
    """Valid JSON of the wrong shape is not transient: one call, `bad_response`, and the
    last good data stays exported with vias_up 0; the next clean poll recovers."""
    config = fast_config(two_projects(simulator.url))
    async with running_exporter(config) as running:
        await running.exporter.poll_all_once()
        before = await serving_ok(running)
        simulator.sim.faults.add(Fault("wrong_shape", match="/p1/tasks"))
        simulator.sim.requests.clear()
        await running.exporter.poll_all_once()
        during = await serving_ok(running)
        simulator.sim.faults.clear()
        await running.exporter.poll_all_once()
        after = await serving_ok(running)
    assert_failed(during, "p1", "tasks", "bad_response", data=True)
    assert during.series("vias_tasks", project_id="p1", source="tasks") == before.series(
        "vias_tasks", project_id="p1", source="tasks"
    )
    assert len(calls(simulator.sim, "/p1/tasks")) == 2  # the failing poll's one + the next
    (failure,) = events(logs, "poll failed", project_id="p1", source="tasks")
    assert "unexpected JSON shape" in failure["error"]
    assert after.value("vias_up", project_id="p1", source="tasks") == 1


async def test_a_page_repeated_forever_ends_the_listing(
    simulator: RunningSimulator, logs: list[EventDict]
) -> None:
    """Every page request answers page 1: the listing stops at the first repeat
    (1 + page_window calls), counted in vias_pagination_stops_total and logged; with
    300 jobs in pages of 50 only page 1's 50 are exported."""
    simulator.sim.faults.add(Fault("repeat_page", match="/p1/infer/tasks"))
    config = fast_config([target(simulator.url, "p1", sources=["infer_tasks"])], page_window=4)
    async with running_exporter(config) as running:
        for _ in range(3):
            await running.exporter.poll_all_once()
        samples = await serving_ok(running)
    listing = [r for r in calls(simulator.sim, "/p1/infer/tasks") if r.path.endswith("/tasks")]
    assert len(listing) == 3 * (1 + 4)
    assert (
        samples.value(
            "vias_pagination_stops_total",
            project_id="p1",
            source="infer_tasks",
            reason="repeated_page",
        )
        == 3
    )
    assert samples.value("vias_poll_items", project_id="p1", source="infer_tasks") == 50
    assert len(events(logs, "listing cut short", reason="repeated_page")) == 3


# --- authentication ------------------------------------------------------------------------


async def test_a_rejected_static_token_is_never_retried(
    simulator: RunningSimulator, logs: list[EventDict]
) -> None:
    """401 APIGW.0301 to a static token: `auth`, never a retry, and after the first refusal
    no request at all until the cool-down ends (Huawei locks credentials after 5 failures):
    the next polls are skipped, counted apart and logged as skipped, not as failed.
    The first poll's two sources ask concurrently: one refusal each, then silence."""
    simulator.sim.faults.add(Fault("unauthorized", match="/p1/"))
    config = fast_config(two_projects(simulator.url), auth_backoff_seconds=30)
    async with running_exporter(config) as running:
        for _ in range(3):
            await running.exporter.poll_all_once()
        samples = await serving_ok(running)
        landing = (await running.text("/"))[1]
    for source, endpoint in (("tasks", TASKS), ("batch_tasks", BATCH)):
        assert_failed(samples, "p1", source, "auth", polls=1)
        assert auth_skips(samples, "p1", source) == 2
        assert api_requests(samples, "p1", endpoint, "401") == 1
    assert len(calls(simulator.sim, "/p1/")) == 2
    assert_healthy(samples, [("p2", "tasks"), ("p2", "batch_tasks")])
    assert events(logs, "retrying request") == []
    failures = events(logs, "poll failed", project_id="p1")
    assert len(failures) == 2
    assert {f["error_code"] for f in failures} == {"APIGW.0301"}
    assert all(f["request_id"] for f in failures)
    skipped = events(logs, "poll skipped", project_id="p1")
    assert len(skipped) == 4
    assert all(
        re.fullmatch(
            r"skipped: credentials refused \(APIGW\.0301\) \d+ s ago, next try in \d+ s", e["error"]
        )
        for e in skipped
    )
    assert all("request_id" not in e for e in skipped)
    assert "skipped: credentials refused (APIGW.0301)" in landing
    (refusal, *_) = events(logs, "credentials refused")
    assert refusal["project_id"] == "p1"


async def test_iam_token_expiring_mid_poll_logs_in_once_more(
    simulator: RunningSimulator, logs: list[EventDict]
) -> None:
    """IAM password mode; the token expires while four pages are in flight: the four 401s
    share one re-login, each page is sent again once, the poll succeeds."""
    sim = simulator.sim
    sim.faults.add(Fault("latency", match="/p1/infer/tasks", seconds=0.2))
    config = fast_config(
        [target(simulator.url, "p1", auth="password", sources=["infer_tasks"])], page_window=4
    )
    async with running_exporter(config) as running:
        poll = asyncio.create_task(running.exporter.poll_all_once())
        # page 1 answered, pages 2-5 sent and waiting in the simulator's latency
        await wait_until(lambda: len(calls(sim, "/p1/infer/tasks")) >= 5, what="pages 2-5")
        sim.expire_tokens()
        await poll
        samples = await serving_ok(running)
    assert_healthy(samples, [("p1", "infer_tasks")])
    assert samples.value("vias_poll_items", project_id="p1", source="infer_tasks") == 300
    assert len(calls(sim, IAM, method="POST")) == 2  # the first login and one re-login
    assert [r.status for r in calls(sim, "/p1/infer/tasks")].count(401) == 4
    assert api_requests(samples, "p1", IAM, "201") == 2
    assert len(events(logs, "iam login succeeded")) == 2


async def test_iam_login_failure_is_not_repeated_within_the_cool_down(
    simulator: RunningSimulator, logs: list[EventDict]
) -> None:
    """A wrong password: one IAM call in all (the login cool-down: the same
    `auth_backoff_seconds` as for VIAS), `auth` for the poll that made it and skipped polls
    after it, and no VIAS call without a token."""
    config = fast_config(
        [
            target(simulator.url, "p1", auth="password", password="wrong-password"),
            target(simulator.url, "p2"),
        ],
        auth_backoff_seconds=30,
    )
    async with running_exporter(config) as running:
        for _ in range(3):
            await running.exporter.poll_all_once()
        samples = await serving_ok(running)
    assert len(calls(simulator.sim, IAM, method="POST")) == 1
    assert calls(simulator.sim, "/p1/") == []
    assert api_requests(samples, "p1", IAM, "401") == 1
    # The two sources share the one login: one poll failed with it, the other five skipped.
    refused = sum(poll_errors(samples, "p1", s).get("auth", 0) for s in ("tasks", "batch_tasks"))
    skips = sum(auth_skips(samples, "p1", source) for source in ("tasks", "batch_tasks"))
    assert (refused, skips) == (1, 5)
    assert_healthy(samples, [("p2", "tasks"), ("p2", "batch_tasks")])
    (login,) = events(logs, "iam login failed")
    assert login["retry_in_seconds"] == 30 and login["project_id"] == "p1"
    (failure,) = events(logs, "poll failed", project_id="p1")
    assert failure["error_code"] == "401" and failure["request_id"]
    assert "username or password is wrong" in failure["error"]
    assert len(events(logs, "poll skipped", project_id="p1")) == 5


async def test_aksk_clock_skew_is_reported_and_not_retried(
    simulator: RunningSimulator, logs: list[EventDict]
) -> None:
    """AK/SK signing with the server's clock 20 minutes ahead: 401 `auth` naming the skew,
    one call per source and poll; within 15 minutes it is accepted again."""
    sim = simulator.sim
    sim.clock_offset = timedelta(minutes=20)
    config = fast_config(two_projects(simulator.url, auth="aksk"))
    async with running_exporter(config) as running:
        for _ in range(2):
            await running.exporter.poll_all_once()
        skewed = await serving_ok(running)
        sim.clock_offset = timedelta(minutes=14)
        await running.exporter.poll_all_once()
        fixed = await serving_ok(running)
    for project in ("p1", "p2"):
        for source in ("tasks", "batch_tasks"):
            assert_failed(skewed, project, source, "auth", polls=2)
    assert len(sim.requests) == 2 * 4 + 4  # one per source and poll: no retry
    assert [r.status for r in sim.requests[:8]] == [401] * 8
    failures = events(logs, "poll failed")
    assert len(failures) == 8
    assert all("15 minutes" in f["error"] and f["error_code"] == "APIGW.0301" for f in failures)
    assert all(f["request_id"] for f in failures)
    for project in ("p1", "p2"):
        for source in ("tasks", "batch_tasks"):
            assert fixed.value("vias_up", project_id=project, source=source) == 1


# --- isolation and staleness ---------------------------------------------------------------


async def test_one_failing_project_of_several_leaves_the_others_alone(
    simulator: RunningSimulator,
) -> None:
    simulator.sim.faults.add(Fault("server_error_json", match="/p2/"))
    config = fast_config(two_projects(simulator.url))
    async with running_exporter(config) as running:
        for _ in range(2):
            await running.exporter.poll_all_once()
        samples = await serving_ok(running)
    assert_healthy(samples, [("p1", "tasks"), ("p1", "batch_tasks")])
    for source in ("tasks", "batch_tasks"):
        assert_failed(samples, "p2", source, "server_error", polls=2)
    assert len(calls(simulator.sim, "/p2/")) == 2 * 2 * ATTEMPTS
    assert len(calls(simulator.sim, "/p1/")) == 2 * 2


async def test_data_older_than_the_maximum_age_is_dropped(simulator: RunningSimulator) -> None:
    """Last good data is kept (vias_up 0) for max_age_intervals x poll interval, then its
    series are dropped; vias_up and the last-success time stay; other sources unaffected."""
    clock = FakeClock()
    config = fast_config(
        [target(simulator.url, "p1", poll_interval_seconds=60)], max_age_intervals=3
    )
    async with running_exporter(config, clock=clock) as running:
        await running.exporter.poll_all_once()
        simulator.sim.faults.add(Fault("server_error_json", match="/p1/tasks"))
        clock.advance(180)  # exactly the maximum age: still shown
        await running.exporter.poll_all_once()
        kept = await serving_ok(running)
        clock.advance(1)
        await running.exporter.poll_all_once()
        dropped = await serving_ok(running)
        simulator.sim.faults.clear()
        clock.advance(60)
        await running.exporter.poll_all_once()
        back = await serving_ok(running)
    start = clock.now - 241
    assert_failed(kept, "p1", "tasks", "server_error", data=True)
    assert_failed(dropped, "p1", "tasks", "server_error", polls=2, data=False)
    assert dropped.value("vias_poll_items", project_id="p1", source="tasks") is None
    for samples in (kept, dropped):
        stamp = samples.value(
            "vias_last_success_timestamp_seconds", project_id="p1", source="tasks"
        )
        assert stamp == start
        assert samples.value("vias_up", project_id="p1", source="batch_tasks") == 1
        assert has_data(samples, "p1", "batch_tasks")
    assert back.value("vias_up", project_id="p1", source="tasks") == 1
    assert has_data(back, "p1", "tasks")
    # The jobs were forgotten with the stale data: they do not come back as new jobs.
    assert not back.series("vias_task_state_transitions_total", from_state="NONE")
