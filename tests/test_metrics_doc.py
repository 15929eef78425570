"""docs/metrics.md and the exposition list exactly the same metrics, with the same types and
labels. The exposition is a real exporter's, after polls of the simulator that give every
metric samples (the `every_metric_exposition` fixture); families are read from the
`# TYPE` lines too, so a metric without samples still counts.

| change to the code (tried, seen red) | failing test |
|---|---|
| undocumented Counter in Telemetry | test_every_exported_metric_is_documented_and_vice_versa |
| a metric renamed in the code only | test_every_exported_metric_is_documented_and_vice_versa |
| `reason` label renamed `cause` | test_every_metric_has_samples_and_its_documented_labels |

A metric renamed in the code *and* in docs/metrics.md passes here, as it should:
tests/deploy/test_exported_names.py checks the alert rules and the dashboard against the
exposition.
"""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

DOC = Path(__file__).parent.parent / "docs" / "metrics.md"
ROW = re.compile(r"^\| `(vias_\w+)` \| (\w+) \| ([^|]*) \|", re.MULTILINE)
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def documented() -> dict[str, tuple[str, frozenset[str]]]:
    """metric name -> (type, labels), from the `| `vias_...` | type | labels |` rows."""
    rows = {name: (kind, labels.strip()) for name, kind, labels in ROW.findall(DOC.read_text())}
    result = {}
    for name, (kind, labels) in rows.items():
        same_as = re.fullmatch(r"as `(vias_\w+)`", labels)
        if same_as:
            labels = rows[same_as.group(1)][1]
        result[name] = (
            kind,
            frozenset(filter(None, (label.strip() for label in labels.split(",")))),
        )
    return result


def exported_types(text: str) -> dict[str, str]:
    """family name -> type, from every `# TYPE` line (families without samples included)."""
    return dict(re.findall(r"^# TYPE (\w+) (\w+)$", text, re.MULTILINE))


def exported_labels(text: str, types: dict[str, str]) -> dict[str, set[frozenset[str]]]:
    """family name (as in `# TYPE`) -> the label-name sets of its samples (`le` left out)."""
    labels: dict[str, set[frozenset[str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name
            if name not in types:
                name = next(
                    name.removesuffix(s)
                    for s in HISTOGRAM_SUFFIXES
                    if name.endswith(s) and types.get(name.removesuffix(s)) == "histogram"
                )
            labels.setdefault(name, set()).add(frozenset(sample.labels) - {"le"})
    return labels


def test_every_exported_metric_is_documented_and_vice_versa(every_metric_exposition: str) -> None:
    exported = exported_types(every_metric_exposition)
    assert exported == {name: kind for name, (kind, _) in documented().items()}


def test_every_metric_has_samples_and_its_documented_labels(every_metric_exposition: str) -> None:
    types = exported_types(every_metric_exposition)
    labels = exported_labels(every_metric_exposition, types)
    assert set(labels) == set(types), f"no samples: {set(types) - set(labels)}"
    for name, (_, expected) in documented().items():
        assert labels.get(name) == {expected}, name


def test_names_follow_the_naming_guide() -> None:
    for name, (kind, _) in documented().items():
        assert name.startswith("vias_")
        assert name.endswith("_total") == (kind == "counter"), name


def test_created_samples_say_what_they_are(every_metric_exposition: str) -> None:
    """In the text format the `_created` samples are a gauge of their own: their HELP
    describes a timestamp, not the counter (prometheus-client would repeat the counter's)."""
    assert (
        "# HELP vias_task_state_transitions_created Unix time each series of "
        "vias_task_state_transitions_total was first counted.\n"
        "# TYPE vias_task_state_transitions_created gauge\n"
    ) in every_metric_exposition
