"""`--metric-allowlist` and `--metric-denylist`, as kube-state-metrics has them: comma
separated regular expressions over metric family names, each matched whole.

A family's name is the one its `# TYPE` line shows in the text format; a counter also
matches without its `_total` (as OpenMetrics names it), and its `_created` series go with
it. The self-metrics are filtered the same way."""

from __future__ import annotations

import re
from dataclasses import dataclass

from prometheus_client.core import Metric


class MetricFilterError(ValueError):
    """A bad list; the message names the flag."""


@dataclass(frozen=True, slots=True)
class MetricFilter:
    allow: re.Pattern[str] | None = None
    deny: re.Pattern[str] | None = None

    @classmethod
    def parse(cls, allowlist: str | None = None, denylist: str | None = None) -> MetricFilter:
        if allowlist is not None and denylist is not None:
            raise MetricFilterError(
                "--metric-allowlist and --metric-denylist are mutually exclusive"
            )
        return cls(
            _compile("--metric-allowlist", allowlist), _compile("--metric-denylist", denylist)
        )

    def allows(self, family: Metric) -> bool:
        names = [family.name]
        if family.type == "counter":
            names.append(f"{family.name}_total")
        if self.allow is not None:
            return any(self.allow.fullmatch(name) for name in names)
        if self.deny is not None:
            return not any(self.deny.fullmatch(name) for name in names)
        return True


def _compile(flag: str, expressions: str | None) -> re.Pattern[str] | None:
    if expressions is None:
        return None
    parts = [part.strip() for part in expressions.split(",") if part.strip()]
    for part in parts:
        try:
            re.compile(part)
        except re.error as error:
            raise MetricFilterError(f"{flag}: bad regular expression {part!r}: {error}") from None
    if not parts:
        raise MetricFilterError(f"{flag}: no regular expression given")
    return re.compile("|".join(f"(?:{part})" for part in parts))
