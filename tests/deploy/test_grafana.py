"""The Grafana dashboard and provisioning, checked without Grafana."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.deploy import dashboard as dash
from tests.deploy.stack import ROOT

PROVISIONING = ROOT / "grafana" / "provisioning"
FILTER_VARIABLES = ("project", "vendor", "algorithm", "deployment")


@pytest.fixture(scope="module")
def board():
    return dash.load()


def test_dashboard_identity(board):
    assert board["uid"] == "vias-overview"
    assert board["title"]
    assert board["schemaVersion"] >= 39
    assert "__inputs" not in board, "file provisioning cannot fill ${DS_...} inputs"
    assert "${DS_" not in json.dumps(board)


def test_variables(board):
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["project"]["query"]["query"] == "label_values(vias_up, project_id)"
    for name in FILTER_VARIABLES:
        assert variables[name]["multi"] and variables[name]["includeAll"], name
        assert variables[name]["allValue"] == ".*", name


def test_every_variable_used_is_defined(board):
    defined = {v["name"] for v in board["templating"]["list"]}
    used = dash.variables_used(json.dumps(board))
    builtin = {name for name in used if name.startswith("__")}
    assert used - builtin <= defined, used - builtin - defined


def test_every_filter_variable_is_used_by_some_panel(board):
    queries = " ".join(expr for _, expr in dash.queries(board))
    for name in FILTER_VARIABLES:
        assert f"${name}" in queries, name


def test_panels_use_the_datasource_variable(board):
    for panel in dash.panels(board):
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_panels_have_ids_descriptions_units_and_queries(board):
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in dash.panels(board):
        assert panel.get("description"), panel["title"]
        assert panel["fieldConfig"]["defaults"].get("unit"), panel["title"]
        assert panel["targets"], panel["title"]


def test_queries_use_only_documented_metrics(board):
    documented = dash.documented_metrics()
    assert "vias_tasks" in documented
    for title, expr in dash.queries(board):
        names = {dash.base_metric(name, documented) for name in dash.metric_names(expr)}
        assert names, f"{title}: no metric found in {expr}"
        assert names <= documented | {"up"}, f"{title}: {names - documented}"


def test_metric_name_parsing():
    expr = (
        "histogram_quantile(0.95, sum by (le, source) (rate(vias_poll_duration_seconds_bucket"
        '{project_id=~"$project"}[$__rate_interval]))) or vector(0) - time() + up{job="x"}'
    )
    assert dash.metric_names(expr) == {"vias_poll_duration_seconds_bucket", "up"}
    assert dash.base_metric(
        "vias_poll_duration_seconds_bucket", {"vias_poll_duration_seconds"}
    ) == ("vias_poll_duration_seconds")


def test_dashboard_covers_the_required_views(board):
    titles = {panel["title"] for panel in dash.panels(board)}
    kinds = {panel["type"] for panel in dash.panels(board)}
    assert {"Jobs by state", "Problem jobs", "Jobs by vendor", "Jobs by algorithm"} <= titles
    assert {"Jobs by deployment", "Batch tasks", "Time since last successful poll"} <= titles
    assert {"API requests by code", "API latency (p50, p95)", "Throttled requests (429)"} <= titles
    assert {"stat", "timeseries", "table"} <= kinds
    problem_table = next(p for p in dash.panels(board) if p["title"] == "Problem jobs")
    assert "vias_problem_task_info" in problem_table["targets"][0]["expr"]


def test_datasource_provisioning():
    config = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text("utf-8"))
    (source,) = config["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"].startswith("http://")


def test_dashboard_provisioning_points_at_the_mounted_dashboards():
    config = yaml.safe_load((PROVISIONING / "dashboards" / "vias.yml").read_text("utf-8"))
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text("utf-8"))
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"../grafana/dashboards:{provider['options']['path']}:ro" in mounts
