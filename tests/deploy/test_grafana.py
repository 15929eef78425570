"""The Grafana dashboard and provisioning, checked without Grafana."""

from __future__ import annotations

import difflib
import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.deploy import dashboard as dash
from tests.deploy.stack import DASHBOARD, ROOT

PROVISIONING = ROOT / "grafana" / "provisioning"
GENERATOR = ROOT / "grafana" / "generate_dashboard.py"
FILTER_VARIABLES = ("project", "vendor", "algorithm", "deployment")


@pytest.fixture(scope="module")
def board() -> dict[str, Any]:
    return dash.load()


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_dashboard", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_committed_dashboard_is_what_the_generator_writes(generator: ModuleType) -> None:
    """The JSON is generated (grafana/generate_dashboard.py): edited by hand, or the generator
    changed without regenerating, it differs."""
    committed = DASHBOARD.read_text(encoding="utf-8")
    generated = generator.render()
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            generated.splitlines(keepends=True),
            "committed",
            "generated",
            n=1,
        )
    )
    assert committed == generated, (
        f"run `python grafana/generate_dashboard.py` and commit the JSON:\n{diff[:4000]}"
    )


def test_generator_check_mode_fails_on_drift_and_writes_nothing(
    tmp_path: Path, run: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    output = tmp_path / "board.json"
    write = run(sys.executable, GENERATOR, "--output", output)
    assert write.returncode == 0, write.stderr
    assert output.read_text(encoding="utf-8") == DASHBOARD.read_text(encoding="utf-8")
    assert run(sys.executable, GENERATOR, "--check", "--output", output).returncode == 0
    edited = output.read_text(encoding="utf-8").replace('"Jobs by state"', '"Jobs per state"')
    output.write_text(edited, encoding="utf-8")
    check = run(sys.executable, GENERATOR, "--check", "--output", output)
    assert check.returncode == 1
    assert '+      "title": "Jobs by state"' in check.stderr, check.stderr
    assert output.read_text(encoding="utf-8") == edited, "--check must not write"


def test_dashboard_identity(board: dict[str, Any]) -> None:
    assert board["uid"] == "vias-overview"
    assert board["title"]
    assert board["schemaVersion"] >= 39
    assert "__inputs" not in board, "file provisioning cannot fill ${DS_...} inputs"
    assert "${DS_" not in json.dumps(board)


def test_variables(board: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["project"]["query"]["query"] == "label_values(vias_up, project_id)"
    for name in FILTER_VARIABLES:
        assert variables[name]["multi"] and variables[name]["includeAll"], name
        assert variables[name]["allValue"] == ".*", name


def test_every_variable_used_is_defined(board: dict[str, Any]) -> None:
    defined = {v["name"] for v in board["templating"]["list"]}
    used = dash.variables_used(json.dumps(board))
    builtin = {name for name in used if name.startswith("__")}
    assert used - builtin <= defined, used - builtin - defined


def test_every_filter_variable_is_used_by_some_panel(board: dict[str, Any]) -> None:
    queries = " ".join(expr for _, expr in dash.queries(board))
    for name in FILTER_VARIABLES:
        assert f"${name}" in queries, name


def test_panels_use_the_datasource_variable(board: dict[str, Any]) -> None:
    for panel in dash.panels(board):
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_panels_have_ids_descriptions_units_and_queries(board: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in dash.panels(board):
        assert panel.get("description"), panel["title"]
        assert panel["fieldConfig"]["defaults"].get("unit"), panel["title"]
        assert panel["targets"], panel["title"]


def test_queries_use_only_documented_metrics(board: dict[str, Any]) -> None:
    documented = dash.documented_metrics()
    assert "vias_tasks" in documented
    for title, expr in dash.queries(board):
        names = {dash.base_metric(name, documented) for name in dash.metric_names(expr)}
        assert names, f"{title}: no metric found in {expr}"
        assert names <= documented | {"up"}, f"{title}: {names - documented}"


def test_metric_name_parsing() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, source) (rate(vias_poll_duration_seconds_bucket"
        '{project_id=~"$project"}[$__rate_interval]))) or vector(0) - time() + up{job="x"}'
    )
    assert dash.metric_names(expr) == {"vias_poll_duration_seconds_bucket", "up"}
    assert dash.base_metric(
        "vias_poll_duration_seconds_bucket", {"vias_poll_duration_seconds"}
    ) == ("vias_poll_duration_seconds")


def test_dashboard_covers_the_required_views(board: dict[str, Any]) -> None:
    titles = {panel["title"] for panel in dash.panels(board)}
    kinds = {panel["type"] for panel in dash.panels(board)}
    assert {"Jobs by state", "Problem jobs", "Jobs by vendor", "Jobs by algorithm"} <= titles
    assert {"Jobs by deployment", "Batch tasks", "Time since last successful poll"} <= titles
    assert {"API requests by code", "API latency (p50, p95)", "Throttled requests (429)"} <= titles
    assert {"stat", "timeseries", "table"} <= kinds
    problem_table = next(p for p in dash.panels(board) if p["title"] == "Problem jobs")
    assert "vias_problem_task_info" in problem_table["targets"][0]["expr"]


def test_datasource_provisioning() -> None:
    config = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text("utf-8"))
    (source,) = config["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"].startswith("http://")


def test_dashboard_provisioning_points_at_the_mounted_dashboards() -> None:
    config = yaml.safe_load((PROVISIONING / "dashboards" / "vias.yml").read_text("utf-8"))
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text("utf-8"))
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"../grafana/dashboards:{provider['options']['path']}:ro" in mounts


NEW_ROWS = (
    "Why are my jobs failing",
    "Cameras (video sources)",
    "Edge pools and nodes",
    "Algorithm services and quotas",
)


def test_dashboard_has_the_rows_for_what_jobs_stand_on(board: dict[str, Any]) -> None:
    rows = [panel["title"] for panel in board["panels"] if panel["type"] == "row"]
    assert set(NEW_ROWS) <= set(rows), set(NEW_ROWS) - set(rows)
    metrics = {name for _, expr in dash.queries(board) for name in dash.metric_names(expr)}
    for name in (
        "vias_video_sources",
        "vias_video_source_quality_problems",
        "vias_video_source_problem_info",
        "vias_video_source_quota",
        "vias_video_groups",
        "vias_video_group_quota",
        "vias_video_group_sources",
        "vias_edge_pools",
        "vias_edge_nodes",
        "vias_problem_edge_pool_info",
        "vias_problem_edge_node_info",
        "vias_algorithm_services",
        "vias_problem_algorithm_service_info",
    ):
        assert name in metrics, name


def test_panels_are_laid_out_without_overlap(board: dict[str, Any]) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        grid = panel["gridPos"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_every_query_is_valid_promql(
    board: dict[str, Any],
    promtool: str,
    run: Callable[..., subprocess.CompletedProcess[str]],
    tmp_path: Path,
) -> None:
    """Each query, its variables set to All, as a recording rule: promtool parses it."""
    rules = [
        {"record": f"panel_query_{number}", "expr": dash.substitute(expr)}
        for number, (_, expr) in enumerate(dash.queries(board))
    ]
    rules_file = tmp_path / "panels.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = run(promtool, "check", "rules", rules_file)
    assert result.returncode == 0, result.stdout + result.stderr


WHY = "Why are my jobs failing"
JOB = 'vias_problem_task_info{{project_id="p1", source="tasks", task_id="{0}", task_name="{0}", state="FAILED", error_code="E", vendor="v", algorithm="a", deployment="cloud", video_source_name="{1}", edge_pool_id="{2}", service_id="{3}"}}'  # noqa: E501


def test_why_are_my_jobs_failing_puts_each_job_beside_its_causes(
    board: dict[str, Any],
    promtool: str,
    run: Callable[..., subprocess.CompletedProcess[str]],
    tmp_path: Path,
) -> None:
    """Evaluated by promtool on series where: job-cam's camera is offline (two cameras share
    its name), job-svc's service failed, job-pool's pool has an Offline node, job-both has
    a problem camera and a failed service, job-ok stands on nothing known to be down."""
    (expr,) = [expr for title, expr in dash.queries(board) if title == WHY]
    series = [
        JOB.format("job-cam", "cam-1", "", "svc-1"),
        JOB.format("job-svc", "cam-2", "", "svc-9"),
        JOB.format("job-pool", "", "pool-1", ""),
        JOB.format("job-both", "cam-1", "", "svc-9"),
        JOB.format("job-ok", "cam-2", "pool-2", "svc-1"),
        'vias_video_source_problem_info{project_id="p1", video_source_id="s1", video_source_name="cam-1", status="offline"}',  # noqa: E501
        'vias_video_source_problem_info{project_id="p1", video_source_id="s2", video_source_name="cam-1", status="abnormal"}',  # noqa: E501
        'vias_problem_algorithm_service_info{project_id="p1", service_id="svc-9", status="service_failed"}',  # noqa: E501
        'vias_problem_algorithm_service_info{project_id="p2", service_id="svc-1", status="service_failed"}',  # noqa: E501
        'vias_problem_edge_node_info{project_id="p1", edge_pool_id="pool-1", node_id="n1", state="Offline"}',  # noqa: E501
    ]
    expected = {
        ("job-cam", "camera"),
        ("job-svc", "algorithm service"),
        ("job-pool", "edge node"),
        ("job-both", "camera"),
        ("job-both", "algorithm service"),
        ("job-ok", "job (nothing it stands on is known to be down)"),
    }
    rows = {
        "job-cam": ("cam-1", "", "svc-1"),
        "job-svc": ("cam-2", "", "svc-9"),
        "job-pool": ("", "pool-1", ""),
        "job-both": ("cam-1", "", "svc-9"),
        "job-ok": ("cam-2", "pool-2", "svc-1"),
    }
    exp_samples = []
    for task_id, cause in sorted(expected):
        camera, pool, service = rows[task_id]
        labels = {
            "project_id": "p1",
            "task_name": task_id,
            "task_id": task_id,
            "state": "FAILED",
            "error_code": "E",
            "vendor": "v",
            "algorithm": "a",
            "cause": cause,
            "video_source_name": camera,
            "edge_pool_id": pool,
            "service_id": service,
        }
        exp_samples.append(
            {
                # an empty label is no label in Prometheus
                "labels": "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items() if v) + "}",
                "value": 1,
            }
        )
    tests = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": "1x5"} for s in series],
                "promql_expr_test": [
                    {"expr": dash.substitute(expr), "eval_time": "2m", "exp_samples": exp_samples}
                ],
            }
        ],
    }
    test_file = tmp_path / "why.yml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = run(promtool, "test", "rules", test_file)
    assert result.returncode == 0, result.stdout + result.stderr
