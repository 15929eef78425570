"""Every series the alert rules and the Grafana dashboard select is one a real exporter
exports: names read from the rules file and the dashboard as they are, checked against the
exposition of an exporter that polled the simulator until every metric had samples (the
`every_metric_exposition` fixture), not against docs/metrics.md. Label names used in
selectors (`{label=...}`) and in `label_values(metric, label)` must exist on that metric.

| change to the code (tried, seen red) | failing test |
|---|---|
| `vias_pagination_stops` renamed in the code and docs | test_alert_rules_select_exported_series |
| token expiry gauge renamed likewise | test_alert_rules_select_exported_series |
| `vias_up` renamed likewise | test_dashboard_selects_exported_series |
| `state` label of `vias_batch_task_tasks` renamed | test_alert_rules_select_exported_series |
"""

from __future__ import annotations

import re

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy import dashboard as dash
from tests.deploy.stack import RULES_FILE

# Series Prometheus makes itself, not the exporter.
PROMETHEUS_SERIES = {"up"}
SELECTOR = re.compile(r"\b([A-Za-z_:][\w:]*)\s*\{([^}]*)\}")
MATCHER = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
LABEL_VALUES = re.compile(r"label_values\(\s*([A-Za-z_:][\w:]*)\s*(?:\{[^}]*\})?\s*,\s*(\w+)\s*\)")


@pytest.fixture(scope="module")
def exported(every_metric_exposition: str) -> dict[str, set[str]]:
    """Every series name the exporter exports -> the label names its samples carry."""
    series: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(every_metric_exposition):
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


def rule_expressions() -> list[tuple[str, str]]:
    """(rule name, expression) of every rule, alerting or recording, in the rules file."""
    groups = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))["groups"]
    return [
        (rule.get("alert") or rule["record"], str(rule["expr"]))
        for group in groups
        for rule in group["rules"]
    ]


def recorded_names() -> set[str]:
    groups = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def problems(expr: str, exported: dict[str, set[str]], known: set[str]) -> list[str]:
    """What `expr` selects that the exporter does not export."""
    found = []
    for name in sorted(dash.metric_names(expr)):
        if name not in exported and name not in known:
            found.append(f"no series {name}")
    for name, matchers in SELECTOR.findall(expr):
        if name in exported:
            missing = set(MATCHER.findall(matchers)) - exported[name] - {"__name__"}
            found += [f"{name} has no label {label}" for label in sorted(missing)]
    return found


def test_alert_rules_select_exported_series(exported: dict[str, set[str]]) -> None:
    rules = rule_expressions()
    assert rules, f"no rules in {RULES_FILE}"
    known = PROMETHEUS_SERIES | recorded_names()
    wrong = {name: p for name, expr in rules if (p := problems(expr, exported, known))}
    assert wrong == {}


def test_dashboard_selects_exported_series(exported: dict[str, set[str]]) -> None:
    board = dash.load()
    wrong = {
        title: p
        for title, expr in dash.queries(board)
        if (p := problems(expr, exported, PROMETHEUS_SERIES))
    }
    for variable in board["templating"]["list"]:
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else ""
        for name, label in LABEL_VALUES.findall(text):
            if label not in exported.get(name, set()):
                wrong[f"variable {variable['name']}"] = [f"{name} has no label {label}"]
    assert wrong == {}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('rate(vias_api_requests_total{code="429"}[5m])', []),
        ("vias_api_requests", ["no series vias_api_requests"]),  # the counter's _total
        ("vias_api_request_duration_seconds", ["no series vias_api_request_duration_seconds"]),
        ("histogram_quantile(0.9, rate(vias_api_request_duration_seconds_bucket[5m]))", []),
        ("vias_task_state_transitions_created > time() - 600", []),
        ('vias_up{colour="red"} == 0', ["vias_up has no label colour"]),
        ('absent(up{job="vias-exporter"})', []),
    ],
)
def test_problems_counts_suffixes_as_prometheus_stores_them(
    exported: dict[str, set[str]], expr: str, expected: list[str]
) -> None:
    assert problems(expr, exported, PROMETHEUS_SERIES) == expected
