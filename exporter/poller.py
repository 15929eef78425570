"""Polls one (project, source) on its interval and swaps the result into the snapshot."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace
from types import MappingProxyType

import structlog

from exporter.aggregation import (
    BatchSnapshot,
    JobAggregator,
    JobIndex,
    JobSnapshot,
    Transition,
    counting_transitions,
    summarize_batch_tasks,
)
from exporter.client import ViasClient
from exporter.errors import ViasError
from exporter.snapshot import (
    Snapshot,
    SnapshotStore,
    SourceState,
    TransitionCount,
    shown_problem_tasks,
)
from exporter.telemetry import Telemetry

log = structlog.get_logger(__name__)

JOB_SOURCES = frozenset({"tasks", "infer_tasks", "face_edge_tasks"})


class SourcePoller:
    """One source of one project. Polls never overlap: the loop awaits each poll, and the
    ticks a slow poll ran over are counted as overruns and skipped."""

    def __init__(
        self,
        *,
        client: ViasClient,
        source: str,
        interval_seconds: float,
        max_age_seconds: float,
        problem_tasks_limit: int,
        store: SnapshotStore,
        telemetry: Telemetry,
        on_update: Callable[[], Awaitable[None]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.project_id = client.project_id
        self.source = source
        self.interval = interval_seconds
        self._max_age = max_age_seconds
        self._problem_limit = problem_tasks_limit
        self._store = store
        self._telemetry = telemetry
        self._on_update = on_update
        self._clock = clock
        self._index: JobIndex | None = None  # last listing's jobs, for transitions
        self._transitions: dict[Transition, TransitionCount] = {}
        self._last_good: SourceState | None = None
        self.polls = 0
        self.last_error: str | None = None

    async def run(self) -> None:
        """Poll forever: first after a small random delay that spreads sources apart."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(random.uniform(0, min(1.0, self.interval / 10)))
        next_at = loop.time()
        while True:
            await self.poll_once()
            next_at += self.interval
            now = loop.time()
            if now > next_at:
                missed = int((now - next_at) // self.interval) + 1
                self._telemetry.poll_overruns.labels(self.project_id, self.source).inc(missed)
                log.warning("poll overran its interval", **self._where(), skipped=missed)
                next_at += missed * self.interval
            await asyncio.sleep(next_at - now)

    async def poll_once(self) -> SourceState:
        started = time.perf_counter()
        try:
            data = await self._collect()
        except ViasError as error:
            state = self._failed(error.reason)
            self.last_error = str(error)
            log.warning(
                "poll failed",
                **self._where(),
                reason=error.reason,
                error=str(error),
                error_code=getattr(error, "error_code", None) or None,
                request_id=getattr(error, "request_id", None) or None,
            )
        except Exception as error:  # a bug must not stop this source's loop or the others
            state = self._failed("internal")
            self.last_error = f"internal error: {type(error).__name__}"
            log.exception("poll crashed", **self._where())
        else:
            state = self._succeeded(data)
            self.last_error = None
            log.info(
                "poll succeeded",
                **self._where(),
                items=data.item_count,
                duration_seconds=round(time.perf_counter() - started, 3),
            )
        self._telemetry.poll_duration.labels(self.project_id, self.source).observe(
            time.perf_counter() - started
        )
        self.polls += 1
        self._count_hidden_problems(self._store.replace(state), state)
        await self._on_update()
        return state

    async def _collect(self) -> JobSnapshot | BatchSnapshot:
        if self.source not in JOB_SOURCES:
            return summarize_batch_tasks(await self.client.list_all(self.source))
        aggregator = JobAggregator(self._problem_limit)
        async for page in self.client.iter_pages(self.source, dedupe=False):
            aggregator.add(page)
            await asyncio.sleep(0)  # let scrapes in between pages, not after a whole window
        snapshot, index = aggregator.finish()
        if self._index is not None:
            transitions: Counter[Transition] = Counter()
            for _ in counting_transitions(self._index, index, transitions):
                await asyncio.sleep(0)  # scrapes go on while 100,000s of jobs are compared
            now = self._clock()
            for transition, count in transitions.items():
                total, created = self._transitions.get(transition, (0, now))
                self._transitions[transition] = TransitionCount(total + count, created)
        self._index = index
        return snapshot

    def _succeeded(self, data: JobSnapshot | BatchSnapshot) -> SourceState:
        state = SourceState(
            self.project_id,
            self.source,
            up=True,
            last_success=self._clock(),
            data=data,
            transitions=MappingProxyType(dict(self._transitions)),
        )
        self._last_good = state
        return state

    def _failed(self, reason: str) -> SourceState:
        self._telemetry.poll_errors.labels(self.project_id, self.source, reason).inc()
        last = self._last_good
        if last is None:
            return SourceState(self.project_id, self.source, up=False)
        assert last.last_success is not None
        # The last good data stays, with its age visible, until it is too old to show as
        # current. The job index stays in any case: when the source comes back, what changed
        # during the outage counts as transitions (a job that failed meanwhile still pages),
        # and jobs already known do not count as new.
        stale = self._clock() - last.last_success > self._max_age
        return replace(last, up=False, data=None if stale else last.data)

    def _count_hidden_problems(self, snapshot: Snapshot, state: SourceState) -> None:
        """Add the problem jobs of this poll that the per-project cap leaves unnamed."""
        if not state.up or not isinstance(state.data, JobSnapshot):
            return
        shown = shown_problem_tasks(snapshot, self._problem_limit).get(state.key, [])
        found = len(state.data.problem_tasks) + state.data.problem_tasks_dropped
        if found > len(shown):
            self._telemetry.problem_tasks_dropped.labels(self.project_id).inc(found - len(shown))

    def _where(self) -> dict[str, str]:
        return {"project_id": self.project_id, "source": self.source}
