"""An account's API budget, and the plan that keeps its polls within it.

Every project of an account shares one API-gateway budget: `rate_limit_per_second`, split
among the shards. A source costs what its last poll sent (pages, detail calls, retries;
an estimate before its first poll), and an account's demand is the sum of cost / interval
of its sources on this replica. When the demand does not fit the usable budget (HEADROOM
is kept for retries), intervals are stretched: job lists get the budget first (their
problems page someone), then resource lists, then lists that cost a call per object.

How fast requests go (the AIMD budget, the rate limiter, the poll slots) is in
`exporter.pacing`. The functions at the top are pure; `AccountPlan` holds an account's
state.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import structlog

from exporter.lists.base import ViasList
from exporter.pacing import AimdBudget, PollSlots, RateLimiter

log = structlog.get_logger(__name__)


class Priority(IntEnum):
    """Who gets the budget first (lowest first) and waits least for a poll slot."""

    JOBS = 0  # job lists: their problems page someone
    RESOURCES = 1  # lists of resources (services, cameras, groups)
    DETAILS = 2  # lists that cost a call per object besides their pages (edge pools)


HEADROOM = 0.2  # of the budget, left for retries and polls that cost more than the last
MIN_SHARE = 0.1  # of the usable budget, kept for each priority with demand: none starves
STRETCH_STEP = 0.05  # stretch factors are rounded up to this: no churn from small changes
DEFAULT_COST = 2.0  # requests of a poll before one was measured: a page and the last one


def priority_of(vias_list: ViasList[Any, Any]) -> Priority:
    if vias_list.jobs:
        return Priority.JOBS
    return Priority.DETAILS if vias_list.details is not None else Priority.RESOURCES


def default_polls_in_flight(budget: float) -> int:
    """Enough polls at once to spend `budget` requests/s when each has one request of
    0.5 s in flight, at least 4: more would only hold pages while waiting for the budget."""
    return max(4, math.ceil(budget / 2))


def demand(costs: Iterable[tuple[float, float]]) -> float:
    """Requests a second that (cost, interval) pairs ask for."""
    return sum(cost / interval for cost, interval in costs)


def stretch_factors(demands: Mapping[Priority, float], budget: float) -> dict[Priority, float]:
    """How much each priority's intervals are stretched so that the demand fits the usable
    budget: every priority with demand is granted up to MIN_SHARE of it, the rest goes in
    priority order. 1.0 when it fits; rounded up to STRETCH_STEP."""
    usable = budget * (1.0 - HEADROOM)
    granted = {p: min(d, MIN_SHARE * usable) for p, d in demands.items() if d > 0}
    spare = usable - sum(granted.values())
    for priority in sorted(granted):
        extra = max(0.0, min(demands[priority] - granted[priority], spare))
        granted[priority] += extra
        spare -= extra
    factors = {}
    for priority, wanted in demands.items():
        given = granted.get(priority, 0.0)
        factor = 1.0 if wanted <= 0 or given >= wanted else wanted / given
        factors[priority] = math.ceil(factor / STRETCH_STEP - 1e-9) * STRETCH_STEP
    return factors


SourceKey = tuple[str, str]  # project_id, source


@dataclass(slots=True)
class SourceCost:
    list_name: str
    priority: Priority
    interval: float  # configured, seconds
    cost: float | None = None  # requests of its last poll; None before the first


@dataclass(frozen=True, slots=True)
class PlanSummary:
    """One account's plan as the log line, the landing page and the metrics show it."""

    account: str
    configured: float  # requests/s: this replica's share of rate_limit_per_second
    budget: float  # requests/s now (lowered after 429s)
    demand: float  # requests/s the sources ask for at their configured intervals
    stretch: float  # the largest stretch factor
    sources: int
    sent: int
    throttled: int
    shards: int = 1

    @property
    def over_budget(self) -> bool:
        return self.stretch > 1.0


class AccountPlan:
    """One account's budget, its sources' costs, and their effective intervals."""

    def __init__(
        self,
        account: str,
        rate_limit_per_second: float,
        *,
        shards: int = 1,
        polls_in_flight: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.account = account
        self.budget = AimdBudget(rate_limit_per_second, shards, clock)
        self.limiter = RateLimiter(self.budget, clock)
        self.slots = PollSlots(polls_in_flight or default_polls_in_flight(self.budget.configured))
        self._clock = clock
        self._sources: dict[SourceKey, SourceCost] = {}
        self._stretch: dict[Priority, float] = {}
        self._demand: dict[Priority, float] = {}
        self._planned_at = -math.inf
        self._reported: tuple[float, float] | None = None  # (demand, stretch) logged last
        self._measured_all = False

    def add(self, key: SourceKey, vias_list: ViasList[Any, Any], interval: float) -> None:
        self._sources[key] = SourceCost(vias_list.name, priority_of(vias_list), interval)
        self._planned_at = -math.inf

    def remove(self, key: SourceKey) -> None:
        self._sources.pop(key, None)
        self._planned_at = -math.inf

    def record(self, key: SourceKey, requests: int) -> None:
        """What a poll of `key` spent (its requests, retries and detail calls included)."""
        source = self._sources.get(key)
        if source is None:
            return
        source.cost = float(requests)
        if not self._measured_all and all(s.cost is not None for s in self._sources.values()):
            self._measured_all = True  # the estimates are measurements now: say the plan
            self._planned_at = -math.inf
            self.report("every source polled")

    def priority(self, key: SourceKey) -> Priority:
        source = self._sources.get(key)
        return source.priority if source is not None else Priority.JOBS

    def effective_interval(self, key: SourceKey) -> float:
        source = self._sources[key]
        return source.interval * self.stretch_factors()[source.priority]

    def stretch_factors(self) -> dict[Priority, float]:
        """Planned again at most once a second (each poll changes a cost a little)."""
        now = self._clock()
        if now - self._planned_at >= 1.0:
            self._demand = self._demands()
            self._stretch = stretch_factors(self._demand, self.budget.rate)
            self._planned_at = now
        return self._stretch

    def _demands(self) -> dict[Priority, float]:
        """Requests/s each priority asks for; a source not polled yet costs what the
        polled sources of its list cost on average, or DEFAULT_COST."""
        measured: dict[str, list[float]] = {}
        for source in self._sources.values():
            if source.cost is not None:
                measured.setdefault(source.list_name, []).append(source.cost)
        typical = {name: sum(costs) / len(costs) for name, costs in measured.items()}
        demands = dict.fromkeys(Priority, 0.0)
        for source in self._sources.values():
            cost = source.cost if source.cost is not None else typical.get(source.list_name)
            demands[source.priority] += (cost or DEFAULT_COST) / source.interval
        return demands

    def report(self, reason: str) -> None:
        """Log the plan when the account is over its budget and its demand (by 5 %) or
        stretch changed since the last line (start-up, reload, discovery, first polls)."""
        summary = self.summary()
        advice = over_budget_advice(summary)
        if advice is None or not self._changed_since_reported(summary):
            return
        self._reported = (summary.demand, summary.stretch)
        estimated = not self._measured_all
        log.warning("API budget too small", reason=reason, demand_estimated=estimated, **advice)

    def _changed_since_reported(self, summary: PlanSummary) -> bool:
        if self._reported is None:
            return True
        demand, stretch = self._reported
        return abs(summary.demand - demand) > 0.05 * demand or summary.stretch != stretch

    def summary(self, *, replan: bool = True) -> PlanSummary:
        """The plan now; without `replan`, as last planned (by a poll): /metrics shows
        that, so that a scrape's body moves only when a poll or a request moved it."""
        factors = self.stretch_factors() if replan else self._stretch
        return PlanSummary(
            account=self.account,
            configured=self.budget.configured,
            budget=self.budget.rate if replan else self.budget.last_rate,
            demand=sum(self._demand.values()),
            stretch=max(factors.values(), default=1.0),
            sources=len(self._sources),
            sent=self.limiter.sent,
            throttled=self.limiter.throttled,
            shards=self.budget.shards,
        )


def over_budget_advice(plan: PlanSummary) -> dict[str, object] | None:
    """The fields of the log line for an account over its budget, or None when it fits:
    what is asked, what is allowed, how much longer intervals are, and what to change."""
    if not plan.over_budget:
        return None
    # rate_limit_per_second is the account's, split among shards: what it would take.
    needed = plan.demand / (1.0 - HEADROOM) * plan.shards
    throttled = plan.budget < plan.configured * 0.99
    advice = (
        f"polls of this account run {plan.stretch:.2f}x their configured intervals; "
        f"to poll on time set rate_limit_per_second to {math.ceil(needed)} (if the account's "
        "API gateway allows that), or lengthen poll_interval_seconds, or poll fewer lists "
        "or projects"
    )
    if throttled:
        advice += "; the gateway answered 429, so the budget is below the configured one"
    return {
        "account": plan.account,
        "demand_requests_per_second": round(plan.demand, 2),
        "budget_requests_per_second": round(plan.budget, 2),
        "configured_requests_per_second": round(plan.configured, 2),
        "stretch": round(plan.stretch, 2),
        "advice": advice,
    }
