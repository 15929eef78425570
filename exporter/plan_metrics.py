"""Each account's API budget plan as self-metrics, read from the plans at every scrape
(`exporter.budget`): a handful of series per account, labelled with the account's name
(never a secret: see `exporter.accounts.account_label`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.budget import PlanSummary

_Value = Callable[[PlanSummary], float]

GAUGES: tuple[tuple[str, str, _Value], ...] = (
    (
        "vias_account_budget_requests_per_second",
        "Requests a second this replica may send for the account now: its share of "
        "rate_limit_per_second, lowered after 429s and raised again slowly.",
        lambda plan: plan.budget,
    ),
    (
        "vias_account_configured_budget_requests_per_second",
        "This replica's share of the account's rate_limit_per_second.",
        lambda plan: plan.configured,
    ),
    (
        "vias_account_demand_requests_per_second",
        "Requests a second the account's sources on this replica ask for at their "
        "configured intervals (each costs what its last poll sent).",
        lambda plan: plan.demand,
    ),
    (
        "vias_account_interval_stretch_ratio",
        "How many times their configured interval the account's most stretched sources "
        "are polled at (1: on time).",
        lambda plan: plan.stretch,
    ),
)
COUNTERS: tuple[tuple[str, str, _Value], ...] = (
    (
        "vias_account_requests",
        "Requests sent to VIAS for the account by this replica (retries included).",
        lambda plan: plan.sent,
    ),
    (
        "vias_account_throttled_requests",
        "Requests of the account the API gateway answered with 429.",
        lambda plan: plan.throttled,
    ),
)


class AccountPlans(Collector):
    def __init__(self, plans: Callable[[], Iterable[PlanSummary]]) -> None:
        self._plans = plans

    def collect(self) -> Iterator[Metric]:
        plans = list(self._plans())
        for name, documentation, value in GAUGES:
            gauge = GaugeMetricFamily(name, documentation, labels=["account"])
            for plan in plans:
                gauge.add_metric([plan.account], value(plan))
            yield gauge
        for name, documentation, value in COUNTERS:
            counter = CounterMetricFamily(name, documentation, labels=["account"])
            for plan in plans:
                counter.add_metric([plan.account], value(plan))
            yield counter
