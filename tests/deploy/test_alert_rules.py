"""The alert rules: valid for promtool, unit-tested alert by alert, annotated for on-call."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.deploy.stack import ALERTMANAGER_CONFIG, ROOT, RULES_FILE, RUNBOOK

RULE_TESTS = sorted((ROOT / "deploy" / "prometheus" / "tests").glob("*.yml"))
RUNBOOK_BASE = "docs/runbook.md#"
JOB_ALERT_LABELS = ("project_id", "vendor", "algorithm")
# Job alerts that keep their last known state while a source is down or not scraped
# (VIASJobFailed counts transitions and needs no such thing).
LAST_KNOWN_ALERTS = (
    "VIASJobAbnormal",
    "VIASJobLackOfResources",
    "VIASJobCreateOrStartFailed",
    "VIASBatchTaskProblems",
)


def _alert_cases() -> dict[str, list[dict[str, Any]]]:
    """alertname -> every alert_rule_test case for it, over all promtool test files."""
    cases: dict[str, list[dict[str, Any]]] = {}
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for case in test.get("alert_rule_test", []):
                cases.setdefault(case["alertname"], []).append(case)
    return cases


def _runbook_anchors() -> set[str]:
    headings = re.findall(r"^#+\s+(.+?)\s*$", RUNBOOK.read_text(encoding="utf-8"), re.M)
    return {re.sub(r"[^a-z0-9 _-]", "", h.lower()).replace(" ", "-") for h in headings}


def test_promtool_check_rules(
    promtool: str, run: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    result = run(promtool, "check", "rules", RULES_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass(
    promtool: str, run: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    assert RULE_TESTS, "no promtool unit tests in deploy/prometheus/tests"
    result = run(promtool, "test", "rules", *RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_case_that_fires_and_one_that_does_not(
    alert_rules: list[dict[str, Any]],
) -> None:
    cases = _alert_cases()
    for rule in alert_rules:
        name = rule["alert"]
        mine = cases.get(name, [])
        assert any(not case.get("exp_alerts") for case in mine), f"{name}: no must-not-fire case"
        firing = [alert for case in mine for alert in case.get("exp_alerts") or []]
        assert firing, f"{name}: no must-fire case"
        for alert in firing:
            assert alert["exp_labels"]["alertname"] == name
            assert alert["exp_labels"]["severity"] == rule["labels"]["severity"]
            assert set(alert["exp_annotations"]) == set(rule["annotations"]), name


def test_unit_tests_only_name_existing_alerts(alert_rules: list[dict[str, Any]]) -> None:
    assert set(_alert_cases()) <= {rule["alert"] for rule in alert_rules}


@pytest.mark.parametrize("field", ["severity"])
def test_alerts_have_a_known_severity(alert_rules: list[dict[str, Any]], field: str) -> None:
    for rule in alert_rules:
        assert rule["labels"][field] in {"critical", "warning"}, rule["alert"]


def test_alerts_have_a_static_summary_and_a_templated_description(
    alert_rules: list[dict[str, Any]],
) -> None:
    for rule in alert_rules:
        annotations = rule["annotations"]
        assert annotations["summary"] and "{{" not in annotations["summary"], rule["alert"]
        assert "{{ $labels." in annotations["description"], rule["alert"]


def test_job_alerts_name_project_vendor_and_algorithm(alert_rules: list[dict[str, Any]]) -> None:
    job_alerts = [r for r in alert_rules if r["alert"].startswith(("VIASJob", "VIASBatch"))]
    assert len(job_alerts) == 5
    for rule in job_alerts:
        for label in JOB_ALERT_LABELS:
            assert f"$labels.{label}" in rule["annotations"]["description"], (rule["alert"], label)


def test_alerts_wait_before_firing(alert_rules: list[dict[str, Any]]) -> None:
    for rule in alert_rules:
        assert "for" in rule, f"{rule['alert']}: say `for:` explicitly"


def test_runbook_urls_point_to_existing_sections(alert_rules: list[dict[str, Any]]) -> None:
    anchors = _runbook_anchors()
    for rule in alert_rules:
        url = rule["annotations"]["runbook_url"]
        assert url.startswith(RUNBOOK_BASE), url
        anchor = url.removeprefix(RUNBOOK_BASE)
        assert anchor == rule["alert"].lower()
        assert anchor in anchors, f"docs/runbook.md has no section {rule['alert']}"


def test_rules_select_the_documented_scrape_job(alert_rules: list[dict[str, Any]]) -> None:
    up_rules = [rule["expr"] for rule in alert_rules if re.search(r"\bup\{", rule["expr"])]
    assert up_rules
    for expr in up_rules:
        assert 'job="vias-exporter"' in expr, expr


def test_job_alerts_read_a_last_known_rule_evaluated_before_them() -> None:
    """The state-keeping itself is unit-tested (deploy/prometheus/tests/
    jobs_unknown_state_test.yml); this keeps each alert on a latch of its own group, placed
    before it so that it reads this evaluation's result, not the previous one."""
    groups = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))["groups"]
    seen = set()
    for group in groups:
        recorded: list[str] = []
        for rule in group["rules"]:
            if "record" in rule:
                name = rule["record"]
                assert name.endswith(":last_known"), name
                # the latch: its own previous result while the source is not known to be up
                assert re.search(rf"^\s*{re.escape(name)}\s*$", rule["expr"], re.M), name
                assert "vias_up" in rule["expr"] and "last_over_time(vias_up" in rule["expr"]
                recorded.append(name)
            elif rule["alert"] in LAST_KNOWN_ALERTS:
                (read,) = re.findall(r"vias:\w+:last_known", rule["expr"])
                assert read in recorded, f"{rule['alert']} reads {read} before it is recorded"
                seen.add(rule["alert"])
    assert seen == set(LAST_KNOWN_ALERTS)


def test_inhibitions_of_job_alerts_compare_labels_the_job_alerts_carry(
    alert_rules: list[dict[str, Any]],
) -> None:
    """An `equal` label that the target alerts do not carry never matches, so it would
    silently disable the inhibition (job alerts carry no instance: a new pod continues them)."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    cases = _alert_cases()
    for rule in alert_rules:
        name = rule["alert"]
        fired = [alert for case in cases.get(name, []) for alert in case.get("exp_alerts") or []]
        carried = set.intersection(*(set(alert["exp_labels"]) for alert in fired))
        for inhibit in config["inhibit_rules"]:
            (target,) = inhibit["target_matchers"]
            target_match = re.fullmatch(r'alertname=~?"(.+)"', target)
            assert target_match, inhibit
            targets = target_match.group(1)
            if re.fullmatch(targets, name):
                missing = set(inhibit.get("equal", [])) - carried
                assert not missing, f"{name} lacks {missing}, needed by {inhibit}"
