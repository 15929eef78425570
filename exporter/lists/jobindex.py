"""The job index: what one listing said of each job (its state and group), kept for the next
poll's transitions at a few bytes per job.

A long-running exporter holds two of these side by side at the end of a poll (the previous
listing's and the new one), so at 1,000,000 jobs a dict of a Python int and a tuple
reference per job (~100 bytes) cost ~200 MB. Here a listing is a sorted `array('q')` of
the 64-bit hashes of the job ids and a parallel array of small codes, each naming one
interned (state, group) tuple: 9 bytes a job while there are at most 256 (state, group)
pairs, 10 up to 65,536.

Built without a per-job object either: `IndexBuilder` appends each job's hash and code to
one of 256 buckets (by the hash's top byte, so the buckets in order are the hashes in
order) in listing order; `finish` sorts each bucket on its own (a stable sort: of one id
listed twice, the first listing wins) and reports the later listings of an id as
duplicates, which the aggregator takes back out of its counts.

Two ids sharing a 64-bit hash is a one-in-billions event at 100,000 jobs (it would merge
two jobs' counts), as with the dict this replaces.
"""

from __future__ import annotations

import bisect
from array import array
from collections import Counter
from collections.abc import Iterator, Mapping

# vendor, algorithm, deployment, and the job's service_id when the listing left the vendor
# or the algorithm empty ("" otherwise): the renderer completes those from the service.
JobGroup = tuple[str, str, str, str]
JobState = tuple[str, JobGroup]  # state, group
Transition = tuple[JobGroup, str, str]  # group, from_state, to_state
# Keyed by hash(job id): an int costs less than half an id string.
JobIndex = Mapping[int, JobState]

NEW_JOB_STATE = "NONE"
DELETED_JOB_STATE = "DELETED"

_BUCKETS = 256


def _code_type(kinds: int) -> str:
    """The smallest array type code that holds `kinds` distinct codes."""
    return "B" if kinds <= 1 << 8 else "H" if kinds <= 1 << 16 else "L"


class CompactJobIndex(Mapping[int, JobState]):
    """hash(job id) -> (state, group) as sorted arrays: a read-only mapping whose values
    are the shared (interned) tuples of `states`."""

    __slots__ = ("_codes", "_hashes", "_states")

    def __init__(self, hashes: array[int], codes: array[int], states: tuple[JobState, ...]):
        self._hashes = hashes  # sorted, unique
        self._codes = codes  # codes[i] is the index in `states` of the job hashes[i]
        self._states = states

    @classmethod
    def from_mapping(cls, index: Mapping[int, JobState]) -> CompactJobIndex:
        if isinstance(index, CompactJobIndex):
            return index
        interned: dict[JobState, int] = {}
        hashes: array[int] = array("q")
        codes: list[int] = []
        for key in sorted(index):
            hashes.append(key)
            codes.append(interned.setdefault(index[key], len(interned)))
        return cls(hashes, array(_code_type(len(interned)), codes), tuple(interned))

    def __getitem__(self, key: int) -> JobState:
        hashes = self._hashes
        at = bisect.bisect_left(hashes, key)
        if at == len(hashes) or hashes[at] != key:
            raise KeyError(key)
        return self._states[self._codes[at]]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, int):
            return False
        at = bisect.bisect_left(self._hashes, key)
        return at < len(self._hashes) and self._hashes[at] == key

    def __iter__(self) -> Iterator[int]:
        return iter(self._hashes)

    def __len__(self) -> int:
        return len(self._hashes)

    @property
    def nbytes(self) -> int:
        """The bytes its arrays hold (what it costs per job, without the fixed part)."""
        return len(self._hashes) * self._hashes.itemsize + len(self._codes) * self._codes.itemsize


class IndexBuilder:
    """Collects (hash, code) in listing order; `finish` makes the sorted index."""

    def __init__(self) -> None:
        self._hashes: list[array[int] | None] = [None] * _BUCKETS
        self._codes: list[array[int] | None] = [None] * _BUCKETS
        self._interned: dict[JobState, int] = {}
        self.states: list[JobState] = []  # by code

    def intern(self, job_state: JobState) -> tuple[int, JobState]:
        """The code of a (state, group), and the one shared tuple of it."""
        code = self._interned.get(job_state)
        if code is None:
            code = self._interned[job_state] = len(self.states)
            self.states.append(job_state)
        return code, self.states[code]

    def add(self, key: int, code: int) -> tuple[int, int]:
        """Append one job; its place (bucket, position), to tell it apart if it turns out
        to be a duplicate."""
        bucket = (key >> 56) + 128
        hashes = self._hashes[bucket]
        if hashes is None:
            hashes = self._hashes[bucket] = array("q")
            self._codes[bucket] = array("I")
        codes = self._codes[bucket]
        assert codes is not None
        hashes.append(key)
        codes.append(code)
        return bucket, len(hashes) - 1

    def finish(self) -> Iterator[tuple[CompactJobIndex | None, list[tuple[int, int, int]]]]:
        """Sort bucket by bucket, yielding after each (so an event loop can serve between
        them) the duplicates found there as (bucket, position, code); the last item yields
        the index."""
        hashes_out: array[int] = array("q")
        codes_out = array(_code_type(len(self.states)))
        for bucket in range(_BUCKETS):
            hashes, codes = self._hashes[bucket], self._codes[bucket]
            if hashes is None or codes is None:
                continue
            self._hashes[bucket] = self._codes[bucket] = None
            duplicates: list[tuple[int, int, int]] = []
            last = None
            for position in sorted(range(len(hashes)), key=hashes.__getitem__):
                key = hashes[position]
                if key == last:
                    duplicates.append((bucket, position, codes[position]))
                    continue
                last = key
                hashes_out.append(key)
                codes_out.append(codes[position])
            yield None, duplicates
        yield CompactJobIndex(hashes_out, codes_out, tuple(self.states)), []


def counting_transitions(
    previous: JobIndex, current: JobIndex, transitions: Counter[Transition], chunk: int = 4096
) -> Iterator[None]:
    """State changes between two consecutive listings into `transitions` (new jobs from
    NONE, gone ones to DELETED), pausing (yielding) after every `chunk` jobs so an event
    loop can serve scrapes in between. Both listings are walked once, in hash order."""
    before = CompactJobIndex.from_mapping(previous)
    after = CompactJobIndex.from_mapping(current)
    old_hashes, old_codes, old_states = before._hashes, before._codes, before._states
    new_hashes, new_codes, new_states = after._hashes, after._codes, after._states
    old_count, new_count = len(old_hashes), len(new_hashes)
    i = j = steps = 0
    while i < old_count or j < new_count:
        old_key = old_hashes[i] if i < old_count else None
        new_key = new_hashes[j] if j < new_count else None
        if new_key is None or (old_key is not None and old_key < new_key):
            state, group = old_states[old_codes[i]]  # gone
            transitions[(group, state, DELETED_JOB_STATE)] += 1
            i += 1
        elif old_key is None or new_key < old_key:
            state, group = new_states[new_codes[j]]  # new
            transitions[(group, NEW_JOB_STATE, state)] += 1
            j += 1
        else:
            old_state, new_state = old_states[old_codes[i]], new_states[new_codes[j]]
            if old_state[0] != new_state[0]:
                transitions[(new_state[1], old_state[0], new_state[0])] += 1
            i += 1
            j += 1
        steps += 1
        if steps % chunk == 0:
            yield
