"""The immutable state scrapes and the landing page read: one entry per (project, source),
swapped in whole by its poller, with the per-project cap on named problem jobs applied
once per swap."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic

from exporter.lists.base import DataT, ListData, ProblemTask, problem_rank

SourceKey = tuple[str, str]  # project_id, source


@dataclass(frozen=True, slots=True)
class SourceState(Generic[DataT]):
    """What one source's polls left: its health, its last error and its last good data."""

    project_id: str
    source: str
    interval_seconds: float
    polled: bool = False  # False until the first poll (successful or not) has ended
    up: bool = False
    last_success: float | None = None  # Unix time
    last_error: str | None = None
    data: DataT | None = None  # the last good data, kept through failed polls
    fresh: bool = False  # data younger than the maximum age: its counts are shown

    @property
    def key(self) -> SourceKey:
        return (self.project_id, self.source)


@dataclass(frozen=True, slots=True)
class Snapshot:
    sources: Mapping[SourceKey, SourceState[Any]]
    # The problem jobs the exposition names: the `limit` most urgent of each project,
    # across its job sources (each source already keeps at most `limit`).
    shown_problems: Mapping[SourceKey, Sequence[ProblemTask]]


class SnapshotStore:
    """Holds the current snapshot; a poll replaces its own source's entry atomically."""

    def __init__(self, problem_tasks_limit: int) -> None:
        self._limit = problem_tasks_limit
        self.current = Snapshot(MappingProxyType({}), MappingProxyType({}))

    def replace(self, state: SourceState[Any]) -> int:
        """Swap in `state`; returns how many of its problem jobs the per-project cap leaves
        unnamed (for `vias_problem_task_series_dropped_total`: this poll's, when it is up)."""
        sources = dict(self.current.sources)
        known = state.key in sources
        sources[state.key] = state  # a known key keeps its place
        if not known:  # sorted: the exposition's order does not depend on which poll ended first
            sources = dict(sorted(sources.items()))
        shown = {
            key: problems
            for key, problems in self.current.shown_problems.items()
            if key[0] != state.project_id
        }
        shown.update(self._shown_problems(state.project_id, sources.values()))
        self.current = Snapshot(MappingProxyType(sources), MappingProxyType(shown))
        data: ListData | None = state.data
        if not state.up or data is None:
            return 0
        found = len(data.problem_tasks) + data.problem_tasks_dropped
        return max(0, found - len(shown.get(state.key, ())))

    def set_problem_tasks_limit(self, limit: int) -> None:
        self._limit = limit  # applied from each project's next poll on

    def remove(self, project_id: str) -> Snapshot:
        """Drop a project's sources (its target was removed): their series leave /metrics."""
        self.current = Snapshot(
            MappingProxyType(
                {key: s for key, s in self.current.sources.items() if key[0] != project_id}
            ),
            MappingProxyType(
                {key: p for key, p in self.current.shown_problems.items() if key[0] != project_id}
            ),
        )
        return self.current

    def _shown_problems(
        self, project_id: str, states: Iterable[SourceState[Any]]
    ) -> dict[SourceKey, tuple[ProblemTask, ...]]:
        ranked = sorted(
            (
                ((*problem_rank(problem), state.source), state.key, problem)
                for state in states
                if state.project_id == project_id and state.data is not None
                for problem in state.data.problem_tasks
            ),
            key=lambda entry: entry[0],
        )
        shown: dict[SourceKey, list[ProblemTask]] = {}
        for _, key, problem in ranked[: self._limit]:
            shown.setdefault(key, []).append(problem)
        return {key: tuple(problems) for key, problems in shown.items()}
