"""The immutable snapshot scrapes read: one entry per (project, source), swapped in whole."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

from exporter.aggregation import BatchSnapshot, JobSnapshot, ProblemTask, Transition, problem_rank

SourceKey = tuple[str, str]  # project_id, source


class TransitionCount(NamedTuple):
    total: int
    # Unix time the series first counted, exposed as its `_created` sample: it lets the
    # new-failure alert tell a series born minutes ago from one Prometheus has just met.
    created: float


@dataclass(frozen=True, slots=True)
class SourceState:
    """What one source's latest poll left: its health and its last good data."""

    project_id: str
    source: str
    up: bool
    last_success: float | None = None  # Unix time
    data: JobSnapshot | BatchSnapshot | None = None
    transitions: Mapping[Transition, TransitionCount] = field(
        default_factory=lambda: MappingProxyType({})
    )

    @property
    def key(self) -> SourceKey:
        return (self.project_id, self.source)


@dataclass(frozen=True, slots=True)
class Snapshot:
    sources: Mapping[SourceKey, SourceState]
    version: int = 0


class SnapshotStore:
    """Holds the current snapshot; a poll replaces its own source's entry atomically."""

    def __init__(self) -> None:
        self.current = Snapshot(MappingProxyType({}))

    def replace(self, state: SourceState) -> Snapshot:
        sources = dict(self.current.sources)
        sources[state.key] = state
        # Sorted, so the exposition's order does not depend on which poll finished first.
        sources = dict(sorted(sources.items()))
        self.current = Snapshot(MappingProxyType(sources), self.current.version + 1)
        return self.current


def shown_problem_tasks(snapshot: Snapshot, limit: int) -> dict[SourceKey, list[ProblemTask]]:
    """The problem jobs the exposition names: the `limit` most urgent of each project,
    across its job sources (each source already keeps at most `limit`)."""
    ranked: dict[str, list[tuple[tuple[int, str, str], SourceKey, ProblemTask]]] = {}
    for key, state in snapshot.sources.items():
        if isinstance(state.data, JobSnapshot):
            for problem in state.data.problem_tasks:
                rank = (*problem_rank(problem), state.source)
                ranked.setdefault(state.project_id, []).append((rank, key, problem))
    shown: dict[SourceKey, list[ProblemTask]] = {}
    for entries in ranked.values():
        entries.sort(key=lambda entry: entry[0])
        for _, key, problem in entries[:limit]:
            shown.setdefault(key, []).append(problem)
    return shown
