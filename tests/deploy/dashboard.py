"""Reading the Grafana dashboard: its panels, queries and variables (shared by the static
dashboard test and the end-to-end test, which runs every query against Prometheus)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, cast

from tests.deploy.stack import DASHBOARD, METRICS_DOC

# `$name`, `${name}` or `${name:format}`; Grafana's own start with `__`
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
GROUPING = ("by", "without", "on", "ignoring", "group_left", "group_right")
KEYWORDS = {*GROUPING, "and", "or", "unless", "offset", "bool", "inf", "nan"}
# the values the end-to-end test gives Grafana's built-in variables
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}


def load() -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(DASHBOARD.read_text(encoding="utf-8")))


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel but rows, including those nested in collapsed rows."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL expression) of every panel target."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def documented_metrics() -> set[str]:
    """Metric names of the `| \\`vias_...\\` |` rows of docs/metrics.md."""
    return set(re.findall(r"^\|\s*`(vias_\w+)`\s*\|", METRICS_DOC.read_text("utf-8"), re.M))


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads (histogram series as written: `..._bucket`)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range durations
    text = re.sub(rf"\b(?:{'|'.join(GROUPING)})\s*\([^)]*\)", "", text)  # label lists
    names = set()
    for match in re.finditer(r"[A-Za-z_:][\w:]*", text):
        followed_by = text[match.end() :].lstrip()
        if match.group(0) in KEYWORDS or followed_by.startswith("("):
            continue  # an operator or a function call
        names.add(match.group(0))
    return names


def base_metric(name: str, documented: set[str]) -> str:
    """A histogram's `_bucket`/`_sum`/`_count` series named by its documented base name."""
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in documented:
            return name.removesuffix(suffix)
    return name


def variables_used(text: str) -> set[str]:
    return {braced or plain for braced, plain in VARIABLE.findall(text)}


def substitute(expr: str) -> str:
    """The query as Prometheus would get it with every variable set to All (`.*`)."""

    def value(match: re.Match[str]) -> str:
        return BUILTINS.get(match.group(1) or match.group(2), ".*")

    return VARIABLE.sub(value, expr)
