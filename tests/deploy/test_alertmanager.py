"""The example Alertmanager configuration: valid, routes by severity, inhibits job alerts."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from typing import Any, cast

import pytest
import yaml

from tests.deploy.stack import ALERTMANAGER_CONFIG

ROUTES = [
    ({"alertname": "VIASJobAbnormal", "severity": "critical", "project_id": "p1"}, "vias-pager"),
    ({"alertname": "VIASJobFailed", "severity": "critical", "project_id": "p1"}, "vias-pager"),
    ({"alertname": "VIASExporterDown", "severity": "critical"}, "vias-pager"),
    (
        {"alertname": "VIASJobLackOfResources", "severity": "warning", "project_id": "p2"},
        "vias-ticket",
    ),
    ({"alertname": "VIASAPIThrottled", "severity": "warning", "project_id": "p1"}, "vias-ticket"),
    ({"alertname": "SomethingElse"}, "vias-ticket"),
]
JOB_ALERTS = [
    "VIASJobAbnormal",
    "VIASJobLackOfResources",
    "VIASJobCreateOrStartFailed",
    "VIASJobFailed",
    "VIASBatchTaskProblems",
]


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return cast(dict[str, Any], yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8")))


def test_amtool_check_config(
    amtool: str, run: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    result = run(amtool, "check-config", ALERTMANAGER_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("labels", "receiver"), ROUTES, ids=[r for _, r in ROUTES])
def test_routes(
    amtool: str,
    run: Callable[..., subprocess.CompletedProcess[str]],
    labels: dict[str, str],
    receiver: str,
) -> None:
    result = run(
        amtool,
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        f"--verify.receivers={receiver}",
        *(f"{key}={value}" for key, value in labels.items()),
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_groups_by_project_and_alertname(config: dict[str, Any]) -> None:
    assert config["route"]["group_by"] == ["project_id", "alertname"]


def test_job_alerts_are_inhibited_while_the_exporter_or_api_is_down(
    config: dict[str, Any], alert_rules: list[dict[str, Any]]
) -> None:
    known = {rule["alert"] for rule in alert_rules}
    inhibited_by: dict[str, set[str]] = {}
    for rule in config["inhibit_rules"]:
        (source,) = rule["source_matchers"]
        (target,) = rule["target_matchers"]
        source_match = re.fullmatch(r'alertname=~?"(.+)"', source)
        target_match = re.fullmatch(r'alertname=~?"(.+)"', target)
        assert source_match and target_match, rule
        sources, targets = source_match.group(1), target_match.group(1)
        for alert in known:
            if re.fullmatch(targets, alert):
                inhibited_by.setdefault(alert, set()).update(
                    a for a in known if re.fullmatch(sources, a)
                )
    expected_sources = {
        "VIASExporterDown",
        "VIASExporterAbsent",
        "VIASSourceStale",
        "VIASAuthFailing",
    }
    root_causes = {
        "VIASVideoSourceDownWithJobs",
        "VIASEdgePoolAbnormal",
        "VIASAlgorithmServiceFailed",
    }
    assert set(inhibited_by) == set(JOB_ALERTS)
    for alert in JOB_ALERTS:
        per_job = alert in {
            "VIASJobAbnormal",
            "VIASJobLackOfResources",
            "VIASJobCreateOrStartFailed",
        }
        assert inhibited_by[alert] == expected_sources | (root_causes if per_job else set()), alert
