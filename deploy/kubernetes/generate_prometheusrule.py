#!/usr/bin/env python3
"""Generate the prometheus-operator PrometheusRule from deploy/prometheus/alerts.yml, the
single source of the alert rules.

    python deploy/kubernetes/generate_prometheusrule.py          # rewrite the file
    python deploy/kubernetes/generate_prometheusrule.py --check  # exit 1 if it is stale
    python deploy/kubernetes/generate_prometheusrule.py --runbook-base URL --output FILE

`--runbook-base` replaces the rules' `docs/runbook.md` (relative to the shipped docs) with
where you host the runbook, e.g. https://git.example.com/ops/vias-exporter/blob/main/docs/runbook.md;
the committed file keeps the relative links.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE.parent / "prometheus" / "alerts.yml"
OUTPUT = HERE / "components" / "prometheus-operator" / "prometheusrule.yaml"
RUNBOOK = "docs/runbook.md#"
HEADER = (
    "# Generated from deploy/prometheus/alerts.yml by\n"
    "# deploy/kubernetes/generate_prometheusrule.py; do not edit: change alerts.yml and run\n"
    "# the script again.\n"
)


def render(rules_text: str, runbook_base: str | None = None) -> str:
    groups = yaml.safe_load(rules_text)["groups"]
    if runbook_base:
        for group in groups:
            for rule in group["rules"]:
                annotations = rule.get("annotations", {})
                url = annotations.get("runbook_url", "")
                if url.startswith(RUNBOOK):
                    annotations["runbook_url"] = runbook_base + "#" + url.removeprefix(RUNBOOK)
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "vias-exporter",
            "labels": {"app.kubernetes.io/name": "vias-exporter"},
        },
        "spec": {"groups": groups},
    }
    return HEADER + yaml.safe_dump(rule, sort_keys=False, width=100, allow_unicode=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    parser.add_argument("--runbook-base", help="URL of docs/runbook.md where you host it")
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"default {OUTPUT.name}")
    args = parser.parse_args(argv)
    expected = render(RULES.read_text(encoding="utf-8"), args.runbook_base)
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != expected:
            print(f"{args.output} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(expected, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
