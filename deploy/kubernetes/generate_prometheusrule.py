#!/usr/bin/env python3
"""Generate the prometheus-operator PrometheusRule from deploy/prometheus/alerts.yml, the
single source of the alert rules.

    python deploy/kubernetes/generate_prometheusrule.py          # rewrite the file
    python deploy/kubernetes/generate_prometheusrule.py --check  # exit 1 if it is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE.parent / "prometheus" / "alerts.yml"
OUTPUT = HERE / "components" / "prometheus-operator" / "prometheusrule.yaml"
HEADER = (
    "# Generated from deploy/prometheus/alerts.yml by\n"
    "# deploy/kubernetes/generate_prometheusrule.py; do not edit: change alerts.yml and run\n"
    "# the script again.\n"
)


def render(rules_text: str) -> str:
    groups = yaml.safe_load(rules_text)["groups"]
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
    args = parser.parse_args(argv)
    expected = render(RULES.read_text(encoding="utf-8"))
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != expected:
            print(f"{OUTPUT} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(expected, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
