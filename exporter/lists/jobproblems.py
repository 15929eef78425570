"""The problem jobs of one job listing, of which the poll names only the most urgent
(`problem_tasks_limit`): kept as a shortlist, not one object per problem job.

At 1,000,000 jobs with 4 % in problem states, a `ProblemTask` for each (ids, names, labels)
held until the end of the listing cost ~20 MB. The shortlist keeps the `2 x limit + 64`
most urgent (pruned now and then, so the list stays short), every anonymous one (no id:
rare, and merged when identical in every label), and of every other an 8-byte place in
the index builder, to count the problem jobs left unnamed once duplicates are known.

The result is the same as ranking them all: a later listing of a job (a duplicate, known
only when the index is sorted) is taken out of both. It could differ only if more than
`limit + 64` of the kept were duplicates (a warning says so).
"""

from __future__ import annotations

from array import array

import structlog

from exporter.lists.base import ProblemTask, problem_rank

log = structlog.get_logger(__name__)

SPARE = 64


class ProblemShortlist:
    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._keep = 2 * limit + SPARE
        self._named: list[tuple[ProblemTask, int]] = []  # (problem, place), listing order
        self._places: array[int] = array("q")  # of every problem job with an id
        self._anonymous: dict[ProblemTask, None] = {}
        self._pruned = False

    def add(self, problem: ProblemTask, place: tuple[int, int] | None) -> None:
        """One problem job; `place` is its (bucket, position) in the index builder."""
        if place is None:
            self._anonymous[problem] = None
            return
        code = place[0] << 32 | place[1]
        self._places.append(code)
        self._named.append((problem, code))
        if len(self._named) >= 2 * self._keep + 1024:
            self._named.sort(key=lambda entry: problem_rank(entry[0]))  # stable
            del self._named[self._keep :]
            self._pruned = True

    def finish(self, duplicates: set[tuple[int, int]]) -> tuple[tuple[ProblemTask, ...], int]:
        """The named problem jobs, most urgent first, and how many more there were."""
        losers = {bucket << 32 | position for bucket, position in duplicates}
        named = [problem for problem, code in self._named if code not in losers]
        # dict.fromkeys: jobs without an id can be identical in every label: one series
        ranked = sorted(dict.fromkeys([*named, *self._anonymous]), key=problem_rank)
        kept = tuple(ranked[: self._limit])
        if not self._pruned:
            return kept, len(ranked) - len(kept)
        if len(self._named) - len(named) > self._keep - self._limit:
            log.warning("problem jobs named may not be the most urgent: many duplicates")
        lost = sum(1 for code in self._places if code in losers) if losers else 0
        return kept, len(self._places) - lost + len(self._anonymous) - len(kept)
