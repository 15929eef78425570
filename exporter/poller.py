"""Polls one (project, list) on its interval and swaps the result into the snapshot.

The poller schedules and reports; what a list is (paging, aggregation, rendering) comes
from its descriptor, and what a scrape or the landing page needs is in the snapshot.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Generic

import structlog

from exporter.budget import AccountPlan
from exporter.details import with_details
from exporter.errors import ViasAuthCoolDown, ViasError
from exporter.lists import REGISTRY
from exporter.lists.base import DataT, ItemT, PollContext, ViasList
from exporter.own_metrics import ProjectMetric
from exporter.pacing import counting_requests
from exporter.paginator import PageFacts, read_listing
from exporter.snapshot import SnapshotStore, SourceState
from exporter.telemetry import Telemetry
from exporter.transport import Transport

log = structlog.get_logger(__name__)

# First polls are spread over `FIRST_POLL_GAP` seconds per source known at start-up (20 a
# second), at least over min(1 s, interval / 10) and at most over the interval: a handful
# of sources all poll within a second of start-up (readiness, the demo), a thousand are
# spread over most of a 60 s interval instead of hitting the API together.
FIRST_POLL_GAP = 0.05
_LISTS = tuple(REGISTRY)


def start_phase(project_id: str, source: str) -> float:
    """Where in the start-up spread, in [0, 1), a source polls first: stable across
    restarts (a hash of the project id, not Python's salted hash()), and the lists of one
    project are a fixed fraction of the spread apart, never at the same moment."""
    digest = hashlib.blake2b(project_id.encode(), digest_size=8).digest()
    project_phase = int.from_bytes(digest, "big") / 2**64
    position = _LISTS.index(source) if source in _LISTS else 0
    return (project_phase + position / len(_LISTS)) % 1.0


def start_spread(interval: float, sources: int) -> float:
    """Seconds over which the first polls of `sources` sources are spread."""
    return min(interval, max(min(1.0, interval / 10), sources * FIRST_POLL_GAP))


class SourcePoller(Generic[ItemT, DataT]):
    """One list of one project. Polls never overlap: the loop awaits each poll, and the
    ticks a slow poll ran over are counted as overruns and skipped.

    Its account's plan (`exporter.budget`) sets its effective interval (the configured one,
    stretched when the account's sources ask for more than its API budget) and lets it
    start a poll when one of the account's poll slots is free: a poll waiting for its turn
    has sent nothing and holds no pages, and the schedule continues from when it started."""

    def __init__(
        self,
        *,
        vias_list: ViasList[ItemT, DataT],
        transport: Transport,
        interval_seconds: float,
        store: SnapshotStore,
        telemetry: Telemetry,
        on_update: Callable[[], Awaitable[None]],
        clock: Callable[[], float] = time.time,
        plan: AccountPlan | None = None,
    ) -> None:
        self.vias_list = vias_list
        self.transport = transport
        self.project_id = transport.project_id
        self.source = vias_list.name
        self.interval = interval_seconds
        settings = transport.settings
        self._max_age_intervals = settings.max_age_intervals
        self._plan = plan or AccountPlan(
            self.project_id, settings.rate_limit_per_second, polls_in_flight=1
        )
        self._plan.add((self.project_id, self.source), vias_list, interval_seconds)
        self._priority = self._plan.priority((self.project_id, self.source))
        self._store = store
        self._telemetry = telemetry
        self._on_update = on_update
        self._clock = clock
        # Its `data` is the last good data, kept through outages.
        self._state: SourceState[DataT] = SourceState(
            self.project_id, self.source, interval_seconds
        )
        # The pages the last data came from (lists whose data follows from them alone).
        self._last_listing: tuple[PageFacts, ...] = ()
        self.polls = 0

    @property
    def state(self) -> SourceState[DataT]:
        return self._state

    def leave_plan(self) -> None:
        """The source is no longer polled: its demand leaves its account's plan."""
        self._plan.remove((self.project_id, self.source))

    @property
    def effective_interval(self) -> float:
        """The interval the account's plan gives this source now (`interval` or longer)."""
        return self._plan.effective_interval((self.project_id, self.source))

    def first_poll_delay(self) -> float:
        """Seconds from start to the first poll: this source's place in a spread that grows
        with the number of sources the exporter polls (see `start_spread`). Over budget,
        polls wait for their account's slots from there, and continue from when they ran."""
        spread = start_spread(self.interval, len(self._store.current.sources))
        return start_phase(self.project_id, self.source) * spread

    async def run(self) -> None:
        """Poll forever: first after this source's place in the start-up spread."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(self.first_poll_delay())
        next_at = loop.time()
        while True:
            async with self._plan.slots.slot(self._priority):
                started = loop.time()  # later than next_at when it waited for its turn
                await self.poll_once()
            interval = self.effective_interval
            self._count(ProjectMetric.vias_poll_interval_seconds, value=self.interval)
            self._count(ProjectMetric.vias_poll_effective_interval_seconds, value=interval)
            next_at = max(next_at, started) + interval
            now = loop.time()
            if now > next_at:  # the poll itself took longer than the interval
                missed = int((now - next_at) // interval) + 1
                self._count(ProjectMetric.vias_poll_overruns, value=missed)
                log.warning("poll overran its interval", **self._where(), skipped=missed)
                next_at += missed * interval
            await asyncio.sleep(next_at - now)

    async def poll_once(self) -> SourceState[DataT]:
        started = time.perf_counter()
        with counting_requests() as requests:
            state = await self._poll(started)
        if requests[0]:  # what this source costs the account's budget (none: skipped)
            self._plan.record((self.project_id, self.source), requests[0])
        return state

    async def _poll(self, started: float) -> SourceState[DataT]:
        try:
            data = await self._collect()
        except ViasAuthCoolDown as error:
            self._count(ProjectMetric.vias_poll_skips, error.reason)
            self._state = self._down(str(error))
            log.warning("poll skipped", **self._where(), reason=error.reason, error=str(error))
        except ViasError as error:
            self._state = self._failed(error.reason, str(error))
            log.warning(
                "poll failed",
                **self._where(),
                reason=error.reason,
                error=str(error),
                error_code=error.error_code or None,
                request_id=error.request_id or None,
            )
        except Exception as error:  # a bug must not stop this source's loop or the others
            self._state = self._failed("internal", f"internal error: {type(error).__name__}")
            log.exception("poll crashed", **self._where())
        else:
            self._state = replace(
                self._state,
                polled=True,
                up=True,
                last_success=self._clock(),
                last_error=None,
                data=data,
                fresh=True,
            )
            log.info(
                "poll succeeded",
                **self._where(),
                items=data.item_count,
                duration_seconds=round(time.perf_counter() - started, 3),
            )
        self._count(ProjectMetric.vias_poll_duration_seconds, value=time.perf_counter() - started)
        self.polls += 1
        hidden = self._store.replace(self._state)
        if hidden:
            dropped = ProjectMetric.vias_problem_task_series_dropped
            self._telemetry.record(self.project_id, dropped, value=hidden)
        log.debug(
            "snapshot swapped",
            **self._where(),
            up=self._state.up,
            fresh=self._state.fresh,
            sources=len(self._store.current.sources),
        )
        await self._on_update()
        return self._state

    async def _collect(self) -> DataT:
        settings = self.transport.settings
        previous = self._state.data
        context = PollContext(
            previous,
            settings.problem_tasks_limit,
            self._clock(),
            batch_task_series_limit=settings.batch_task_series_limit,
        )
        aggregator = self.vias_list.aggregator(context)
        # The last listing's pages: empty until a listing gave data.
        listing = await read_listing(
            self.transport, self.vias_list, aggregator.add, self._last_listing
        )
        if listing.unchanged and previous is not None:
            data = previous  # the same pages as the last data came from: never parsed
        else:
            data = await aggregator.finish()
        if self.vias_list.details is not None:
            data = await with_details(
                self.transport,
                self.vias_list.details,
                data,
                previous,
                settings.detail_calls_per_poll,
            )
        if self.vias_list.same_listing_same_data:
            self._last_listing = listing.pages
        return data

    def _count(self, metric: ProjectMetric, *labels: str, value: float = 1) -> None:
        """One change of this source's `metric` (`Telemetry.record`)."""
        self._telemetry.record(self.project_id, metric, self.source, *labels, value=value)

    def _failed(self, reason: str, error: str) -> SourceState[DataT]:
        self._count(ProjectMetric.vias_poll_errors, reason)
        return self._down(error)

    def _down(self, error: str) -> SourceState[DataT]:
        last_success = self._state.last_success
        # The last good data stays: its counts are shown, with their age visible, until
        # they are too old to pass for current; the named problem objects stay until the
        # source answers again (unknown is not recovered). When it does, what changed
        # during the outage counts as transitions (a job that failed meanwhile still
        # pages), and jobs already known do not count as new.
        # In effective intervals: a source the plan polls less often is not stale sooner.
        max_age = self._max_age_intervals * self.effective_interval
        fresh = last_success is not None and self._clock() - last_success <= max_age
        return replace(self._state, polled=True, up=False, last_error=error, fresh=fresh)

    def _where(self) -> dict[str, str]:
        return {"project_id": self.project_id, "source": self.source}
