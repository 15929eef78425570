"""The alerts' runbook links: relative to the shipped docs (never a placeholder
repository), and set to where the runbook is hosted in one step, for the PrometheusRule
(`generate_prometheusrule.py --runbook-base`) and for a plain copy of the rules (the
`sed` line documented at the top of alerts.yml)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.stack import ROOT, RULES_FILE

GENERATOR = ROOT / "deploy" / "kubernetes" / "generate_prometheusrule.py"
HOSTED = "https://git.example.com/ops/vias-exporter/blob/main/docs/runbook.md"


def _runbook_urls(groups: list[dict[str, Any]]) -> dict[str, str]:
    return {
        rule["alert"]: rule["annotations"]["runbook_url"]
        for group in groups
        for rule in group["rules"]
        if "alert" in rule
    }


def test_runbook_links_are_relative_to_the_shipped_docs() -> None:
    urls = _runbook_urls(yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))["groups"])
    assert urls
    for alert, url in urls.items():
        assert url == f"docs/runbook.md#{alert.lower()}"
        assert (ROOT / url.split("#")[0]).is_file()
    shipped = [*(ROOT / "deploy").rglob("*.yml"), *(ROOT / "deploy").rglob("*.yaml")]
    assert not [p for p in shipped if "github.com/vias-exporter" in p.read_text(encoding="utf-8")]


def test_the_prometheusrule_takes_the_hosted_runbook(tmp_path: Path) -> None:
    output = tmp_path / "rule.yaml"
    subprocess.run(
        [sys.executable, str(GENERATOR), "--runbook-base", HOSTED, "--output", str(output)],
        check=True,
    )
    (rule,) = yaml.safe_load_all(output.read_text(encoding="utf-8"))
    for alert, url in _runbook_urls(rule["spec"]["groups"]).items():
        assert url == f"{HOSTED}#{alert.lower()}"


def test_the_documented_sed_line_sets_the_hosted_runbook() -> None:
    text = RULES_FILE.read_text(encoding="utf-8")
    (line,) = re.findall(r"^#\s+(sed '.*') alerts\.yml$", text, re.M)
    pattern, replacement = line.removeprefix("sed 's|").removesuffix("|'").split("|")
    assert replacement == f"runbook_url: {HOSTED}#"
    replaced = text.replace(pattern, replacement)  # the example host is HOSTED
    urls = _runbook_urls(yaml.safe_load(replaced)["groups"])
    assert urls and all(url == f"{HOSTED}#{alert.lower()}" for alert, url in urls.items())
