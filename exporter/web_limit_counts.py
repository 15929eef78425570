"""Counting the web server's limits (README, "Web server limits"): the metric
`vias_exporter_web_limits_reached_total{limit}` and a warning a minute at most per flood.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from weakref import WeakKeyDictionary

import structlog
from aiohttp import web
from prometheus_client import Counter

from exporter.telemetry import Telemetry

log = structlog.get_logger(__name__)


class LimitCounts:
    """`vias_exporter_web_limits_reached_total{limit}`, in the exporter's process registry
    (one per exporter: `limit_counts`); every limit present from the start, at 0."""

    LIMITS = (
        "read_header_timeout",
        "max_connections_idle_closed",
        "max_connections_refused",
        "basic_auth_pending_checks",
        "open_files",
    )

    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry
        self._counter = Counter(
            "vias_exporter_web_limits_reached",
            "Times a limit of the web server was reached, by limit (README, Web server limits).",
            ["limit"],
            registry=telemetry.process_registry,
        )
        for limit in self.LIMITS:
            self._counter.labels(limit)
        telemetry.changes += 1

    def hit(self, limit: str) -> None:
        self._counter.labels(limit).inc()
        self._telemetry.changes += 1


_LIMIT_COUNTS: WeakKeyDictionary[Telemetry, LimitCounts] = WeakKeyDictionary()
LIMIT_COUNTS_KEY = web.AppKey("limit_counts", LimitCounts)


def limit_counts(telemetry: Telemetry) -> LimitCounts:
    counts = _LIMIT_COUNTS.get(telemetry)
    if counts is None:
        counts = _LIMIT_COUNTS[telemetry] = LimitCounts(telemetry)
    return counts


class Tally:
    """Counts an event (in `counts`, under `limit`) and logs it at most once per `every`
    seconds, with how many happened since the last line: a flood is one line a minute."""

    def __init__(
        self,
        event: str,
        limit: str = "",
        counts: LimitCounts | None = None,
        every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.event = event
        self._limit = limit
        self._counts = counts
        self.total = 0
        self._every = every
        self._clock = clock
        self._unlogged = 0
        self._logged_at: float | None = None

    def hit(self, **fields: Any) -> None:
        self.total += 1
        if self._counts is not None:
            self._counts.hit(self._limit)
        self._unlogged += 1
        now = self._clock()
        if self._logged_at is None or now - self._logged_at >= self._every:
            log.warning(self.event, count=self._unlogged, total=self.total, **fields)
            self._unlogged = 0
            self._logged_at = now
