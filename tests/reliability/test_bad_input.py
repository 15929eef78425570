"""Bad input: arbitrary and adversarial API answers, hostile label values, broken
configuration. The exporter either copes or fails with its own typed error or message:
never an unexpected exception, an invalid exposition or a stack trace."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from exporter.auth import _expiry
from exporter.collector import Exposition
from exporter.errors import ViasError, ViasHTTPError, ViasResponseError, http_error
from exporter.lists import DISTINCT_LISTS, REGISTRY
from exporter.lists.base import PollContext
from exporter.lists.batch_tasks import BatchTaskPage
from exporter.lists.jobs import TaskPage
from exporter.models import parse_model
from exporter.snapshot import SnapshotStore, SourceState
from exporter.telemetry import Telemetry
from tests.reliability.reliability_support import (
    EXPORTER_SCRIPT,
    ROOT,
    clean_env,
    fast_config,
    running_exporter,
)
from tests.support import SECRETS, TOKEN, RunningSimulator, Samples, target

PAGE_MODELS = {name: REGISTRY[name].page_model for name in DISTINCT_LISTS}
HTTP_REASONS = {"auth", "throttled", "server_error", "client_error"}

# --- strategies ----------------------------------------------------------------------------

huge_ints = st.one_of(
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**64 + 2),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([10**100, -(10**100), 10**4000]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    huge_ints,
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(["", "0", "1", "cloud", "edge", "running", "RUNNING", "1686034773024"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=30,
)
TASK_FIELDS = [
    "id", "name", "state", "company", "title", "type", "error", "status", "group_name",
    "created_at", "updated_at", "edge_pool_id", "batch_task_name", "alg_name",
    "video_group_name", "num_task", "batch_task_status_info",
]  # fmt: skip
item_dicts = st.dictionaries(
    st.one_of(st.sampled_from(TASK_FIELDS), st.text(max_size=10)),
    st.one_of(
        json_values,
        st.dictionaries(st.sampled_from(["code", "message", "running", "FAILED"]), json_values),
    ),
    max_size=10,
)
pages = st.fixed_dictionaries(
    {},
    optional={
        "count": json_values,
        "tasks": st.one_of(json_values, st.lists(item_dicts, max_size=8)),
        "batch_task_list": st.one_of(json_values, st.lists(item_dicts, max_size=8)),
        "page": json_values,
    },
)


def _dump(value: Any) -> bytes:
    # allow_nan: Python writes NaN/Infinity, which some gateways do too
    return json.dumps(value, allow_nan=True).encode()


bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(_dump),
    pages.map(_dump),
    pages.map(_dump).flatmap(lambda b: st.integers(0, len(b)).map(lambda n: b[:n])),  # cut
)
ADVERSARIAL = [
    b"[" * 100_000,  # nesting deeper than any parser's recursion limit
    b'{"error":' * 5_000 + b"1" + b"}" * 5_000,
    b'{"count": 1' + b"0" * 5_000 + b"}",  # a 5001-digit integer
    b'{"tasks": [{"name": 1e400, "created_at": -1e308}]}',
    b'{"batch_task_list": [{"batch_task_status_info": {"running": Infinity}}]}',
    b'{"batch_task_list": [{"batch_task_status_info": {"running": NaN}}]}',
    b'{"batch_task_list": [{"batch_task_status_info": {"running": [1, 2]}}]}',
    b'{"batch_task_list": [{"batch_task_status_info": {"running": {"a": 1}}}]}',
    b'{"tasks": [{"name": "\\ud800"}]}',  # a lone surrogate
    b"\xff\xfe\x00{",
    # jobs and batch tasks without ids, identical in every label
    b'{"tasks": [{"name": "a", "state": "FAILED"}, {"name": "a", "state": "FAILED"}],'
    b' "batch_task_list": [{"batch_task_name": "a"}, {"batch_task_name": "a"}]}',
    b"<html><body><h1>502 Bad Gateway</h1></body></html>",
    b"",
]


def _examples(**others: Any) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def decorate(test: Callable[..., None]) -> Callable[..., None]:
        for body in ADVERSARIAL:
            test = example(body=body, **others)(test)
        return test

    return decorate


def render(states: list[SourceState[Any]]) -> str:
    store = SnapshotStore(problem_tasks_limit=200)
    for state in states:
        store.replace(state)
    exposition = Exposition(store, Telemetry())
    exposition.render()
    text = exposition.body(openmetrics=False, gzipped=False).decode()
    exposition.body(openmetrics=True, gzipped=True)
    return text


def state_for(source: str, page: Any) -> SourceState[Any]:
    aggregator = REGISTRY[source].aggregator(PollContext(None, problem_tasks_limit=50, now=1.0))
    aggregator.add(page.items)
    data = asyncio.run(aggregator.finish())
    return SourceState(
        "p1", source, 60, polled=True, up=True, last_success=1.0, data=data, fresh=True
    )


def assert_unique_series(text: str) -> None:
    seen: set[tuple[str, frozenset[tuple[str, str]]]] = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in seen, f"duplicate series {key}"
            seen.add(key)


# --- API answers ---------------------------------------------------------------------------


@pytest.mark.parametrize("source", PAGE_MODELS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies)
@_examples()
def test_any_answer_parses_to_a_page_or_a_typed_error(source: str, body: bytes) -> None:
    """parse_model never raises anything but ViasError; what it accepts aggregates and
    renders to a valid exposition without duplicate series."""
    model = PAGE_MODELS[source]
    try:
        page = parse_model(model, body, "/v2/{project_id}/tasks")
    except ViasError as error:
        assert error.reason == "bad_response"
        assert "\n" not in str(error) and len(str(error)) < 400
        return
    assert isinstance(page, model)
    text = render([state_for(source, page)])
    assert_unique_series(text)


@settings(max_examples=200, deadline=None)
@given(
    status=st.integers(min_value=300, max_value=599),
    body=bodies,
    retry_after=st.one_of(st.none(), st.floats(min_value=0, max_value=1e6)),
    request_id=st.text(max_size=300),
)
@_examples(status=502, retry_after=None, request_id="r" * 300)
def test_any_error_answer_gives_a_typed_http_error(
    status: int, body: bytes, retry_after: float | None, request_id: str
) -> None:
    error = http_error(status, "/v2/{project_id}/tasks", body, retry_after, request_id)
    assert isinstance(error, ViasHTTPError)
    assert error.reason in HTTP_REASONS
    assert error.retryable == (status == 429 or status >= 500)
    assert len(str(error)) < 1000  # excerpts and fields are bounded
    assert len(error.request_id) <= 200


# --- label values --------------------------------------------------------------------------

NASTY = [
    'say "hi"',
    "back\\slash\\",
    "new\nline\r\n",
    "tab\tand\x00nul\x7f",
    "emoji 🎥🔥👩‍🚒",
    "人脸识别任务-东门",
    "x" * 10_000,
    "",
    "} # HELP not_a_comment 1\nvias_up 0",
    '="},{',
]
label_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=60)


@settings(max_examples=200, deadline=None)
@given(name=label_text, vendor=label_text, algorithm=label_text, state=label_text)
def test_any_label_value_round_trips_through_the_exposition(
    name: str, vendor: str, algorithm: str, state: str
) -> None:
    page = TaskPage.model_validate(
        {
            "tasks": [
                {
                    "id": "t1",
                    "name": name,
                    "state": "FAILED",
                    "company": vendor,
                    "title": algorithm,
                },
                {"id": "t2", "name": name, "state": state, "company": vendor},
            ]
        }
    )
    batch = BatchTaskPage.model_validate(
        {"batch_task_list": [{"id": "b1", "batch_task_name": name, "company": vendor}]}
    )
    text = render([state_for("tasks", page), state_for("batch_tasks", batch)])
    samples = Samples.parse(text)
    problems = samples.series("vias_problem_task_info", task_id="t1")
    assert [dict(labels)["task_name"] for labels in problems] == [name]
    assert [dict(labels)["vendor"] for labels in problems] == [vendor]
    assert [dict(labels)["algorithm"] for labels in problems] == [algorithm]
    (info,) = samples.series("vias_batch_task_info", batch_task_id="b1")
    assert dict(info)["batch_task_name"] == name
    assert_unique_series(text)


async def test_hostile_job_names_survive_the_whole_pipeline(simulator: RunningSimulator) -> None:
    """Names from users, served by the simulator over HTTP, scraped from the real server:
    every value comes back equal, and promtool accepts the exposition."""
    project = simulator.world.projects["p1"]
    for index, name in enumerate(NASTY):
        project.add_task(
            task_id=f"nasty-{index}",
            name=name,
            state="FAILED",
            vendor=name[:200],
            algorithm="算法-" + name[:50],
            error_code="VIAS.10030001",
        )
    config = fast_config(
        [target(simulator.url, "p1", sources=["tasks"])],
        problem_tasks_limit=1000,
        label_value_max_bytes=100_000,  # the 10 kB name whole (the cap: test_hostile_api.py)
    )
    async with running_exporter(config) as running:
        await running.exporter.poll_all_once()
        _, text = await running.text("/metrics")
    samples = Samples.parse(text)
    for index, name in enumerate(NASTY):
        (labels,) = samples.series("vias_problem_task_info", task_id=f"nasty-{index}")
        assert dict(labels)["task_name"] == project.tasks[f"nasty-{index}"].name
        assert dict(labels)["vendor"] == name[:200]
        assert dict(labels)["algorithm"] == "算法-" + name[:50]
    assert_unique_series(text)
    promtool_check(text)


def promtool_check(text: str) -> None:
    """`promtool check metrics` on the exposition. It also lints names and help texts;
    only parse errors fail the test (lint findings are printed, see docs/reliability.md)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    output = result.stdout + result.stderr
    print(f"promtool check metrics: exit {result.returncode}\n{output}")
    assert "error while linting" not in output, output
    assert "text format parsing error" not in output, output
    lint_only = all(": " in line for line in output.strip().splitlines())
    assert result.returncode == 0 or lint_only, output


# --- configuration -------------------------------------------------------------------------


def _yaml_target(**fields: Any) -> dict[str, Any]:
    return {"project_id": "p1", "endpoint": "http://127.0.0.1:9", "auth_token": TOKEN, **fields}


BAD_CONFIGS: dict[str, tuple[Any, list[str]]] = {
    # name: (YAML document or text, what stderr must name)
    "missing project": (
        {"targets": [{k: v for k, v in _yaml_target().items() if k != "project_id"}]},
        ["targets[0].project_id", "Field required"],
    ),
    "two auth modes": (
        {"targets": [_yaml_target(access_key="AK", secret_key="sk-" + TOKEN)]},
        ["targets[0]", "exactly one auth mode", "auth_token", "access_key/secret_key"],
    ),
    "bad URL": (
        {"targets": [_yaml_target(endpoint="vias dot example")]},
        ["targets[0].endpoint"],
    ),
    "negative interval": (
        {"targets": [_yaml_target(poll_interval_seconds=-5)]},
        ["targets[0].poll_interval_seconds", "greater than 0"],
    ),
    "unreadable secret file": (
        {"targets": [{**_yaml_target(auth_token=None), "auth_token_file": "SECRET_DIR"}]},
        ["targets[0].auth_token_file", "cannot read secret file"],
    ),
    "missing secret file": (
        {"targets": [{**_yaml_target(auth_token=None), "auth_token_file": "/nonexistent/token"}]},
        ["targets[0].auth_token_file", "No such file"],
    ),
    "unknown field": (
        {"targets": [_yaml_target(pasword="x")]},
        ["targets[0].pasword", "Extra inputs"],
    ),
    "negative retries": (
        {"global": {"max_retries": -1}, "targets": [_yaml_target()]},
        ["global.max_retries"],
    ),
    "malformed YAML": ("targets:\n  - project_id: [p1\n    auth_token: x\n", ["malformed YAML"]),
    "not a mapping": ("- just\n- a list\n", ["expected a mapping"]),
}


def _write_config(tmp_path: Path, document: Any) -> Path:
    secret_dir = tmp_path / "secret-dir"  # a directory: unreadable as a file, even as root
    secret_dir.mkdir(exist_ok=True)
    if isinstance(document, dict):
        for item in document.get("targets", []):
            if item.get("auth_token_file") == "SECRET_DIR":
                item["auth_token_file"] = str(secret_dir)
            if item.get("auth_token") is None:
                item.pop("auth_token", None)
        text = json.dumps(document)  # JSON is YAML
    else:
        text = document
    path = tmp_path / "config.yml"
    path.write_text(text, encoding="utf-8")
    return path


def run_exporter(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(EXPORTER_SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env=env or clean_env(),
    )


@pytest.mark.parametrize("mode", ["--check-config", "start"])
@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_bad_configuration_exits_2_naming_the_field(tmp_path: Path, case: str, mode: str) -> None:
    document, expected = BAD_CONFIGS[case]
    path = _write_config(tmp_path, document)
    extra = ["--check-config"] if mode == "--check-config" else ["--web.listen-address", ":0"]
    result = run_exporter("--config.file", str(path), *extra)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "configuration error" in result.stderr
    for text in expected:
        assert text in result.stderr, (text, result.stderr)
    for secret in SECRETS:
        assert secret not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"VIAS_REGION": "cn-north-4", "VIAS_AUTH_TOKEN": TOKEN}, "VIAS_PROJECT_ID"),
        (
            {"VIAS_PROJECT_ID": "p", "VIAS_REGION": "x", "VIAS_POLL_INTERVAL_SECONDS": "-1"},
            "VIAS_POLL_INTERVAL_SECONDS",
        ),
        ({"VIAS_PROJECT_ID": "p", "VIAS_ENDPOINT": "nope", "VIAS_AUTH_TOKEN": TOKEN}, "ENDPOINT"),
    ],
)
def test_bad_environment_exits_2_naming_the_variable(env: dict[str, str], expected: str) -> None:
    result = run_exporter("--check-config", env=clean_env(**env))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert expected in result.stderr
    assert TOKEN not in result.stderr + result.stdout


def test_a_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = run_exporter("--check-config", "--config.file", str(tmp_path / "absent.yml"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "absent.yml" in result.stderr


@pytest.mark.parametrize(
    "count", [b"[1, 2]", b'{"a": 1}', b"Infinity", b"1e400", b"NaN", b'"many"']
)
def test_a_state_count_that_is_not_a_number_is_a_bad_response(count: bytes) -> None:
    """Found by the property test: a list, object or infinite count escaped as TypeError
    or OverflowError (reason `internal`); now a typed bad_response."""
    body = b'{"batch_task_list": [{"batch_task_status_info": {"running": ' + count + b"}}]}"
    with pytest.raises(ViasResponseError):
        parse_model(BatchTaskPage, body, "/v2/{project_id}/batch-tasks")


@pytest.mark.parametrize(
    "expires_at", ['"99999999999999999999"', "-1e20", '"not a time"', "[]", "null"]
)
def test_an_iam_expiry_no_clock_can_hold_falls_back_to_24_hours(expires_at: str) -> None:
    body = ('{"token": {"expires_at": ' + expires_at + "}}").encode()
    assert _expiry(body, 1000.0) == 1000.0 + 24 * 3600
