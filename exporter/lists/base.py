"""What a VIAS list is: the typed descriptor each list module fills in, and the pieces the
paginator, the poller and the collector rely on (the kube-state-metrics store pattern: one
module per resource, one registry line).

The type parameters tie a list together: the items its page model yields are what its
aggregator takes, and the data its aggregator makes is what its renderer and its details
take. mypy rejects a descriptor whose pieces do not fit, and a missing piece is a missing
keyword argument.

A list never calls the API: the paginator lists it, and the further calls its data needs
(one per object: job details, edge-pool details) it declares (`Details`) and
`exporter/details.py` makes, beside the poller, within `detail_calls_per_poll`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeAlias, TypeVar

from prometheus_client.core import Metric

from exporter.models import ApiModel, Page

GroupKey = tuple[str, str, str]  # vendor, algorithm, deployment


class Identified(Protocol):
    @property
    def id(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class ProblemTask:
    """A job in a problem state, named by `vias_problem_task_info` (within the cap)."""

    task_id: str
    task_name: str
    state: str
    error_code: str
    group: GroupKey
    # What the job stands on, where the listing says: ties its alert to a root cause.
    video_source_name: str = ""
    edge_pool_id: str = ""
    service_id: str = ""


# Problem jobs beyond the cap are chosen in this order: the most urgent kept first.
PROBLEM_ORDER: tuple[str, ...] = (
    "FAILED",
    "ABNORMAL",
    "START_FAILED",
    "CREATE_FAILED",
    "LACK_OF_RESOURCES",
)
_PROBLEM_RANK = {state: rank for rank, state in enumerate(PROBLEM_ORDER)}


def problem_rank(problem: ProblemTask) -> tuple[int, str]:
    """The order in which the cap keeps problem jobs: most urgent state first, then by id."""
    return (_PROBLEM_RANK[problem.state], problem.task_id)


class ListData(Protocol):
    """What every list's aggregate tells the poller, the snapshot and the landing page."""

    @property
    def item_count(self) -> int: ...

    @property
    def problem_tasks(self) -> Sequence[ProblemTask]: ...

    @property
    def problem_tasks_dropped(self) -> int: ...


def documented_then_seen(documented: tuple[str, ...], seen: Iterable[str]) -> tuple[str, ...]:
    """The values a family exports: every documented one (0 when absent), then any other
    value seen, sorted (VIAS may add states; they are kept as sent)."""
    return (*documented, *sorted(value for value in seen if value not in documented))


class NoProblemJobs:
    """Base of the data of a list whose items are not jobs: no problem jobs to name."""

    __slots__ = ()
    problem_tasks: ClassVar[tuple[ProblemTask, ...]] = ()
    problem_tasks_dropped: ClassVar[int] = 0


ItemT = TypeVar("ItemT", bound=Identified)
ItemT_contra = TypeVar("ItemT_contra", bound=Identified, contravariant=True)
DataT = TypeVar("DataT", bound=ListData)
DataT_co = TypeVar("DataT_co", bound=ListData, covariant=True)

PageEnd = Literal["total", "short_page", "unpaged"]


@dataclass(frozen=True, slots=True)
class Paging:
    """How a list pages.

    - `total`: `count` is the number of items in the whole listing; page up to it (and
      stop at a short page anyway).
    - `short_page`: `count` is the number on this page; page until a short or empty page.
    - `unpaged`: one request returns everything.

    Where the documented bounds are unreliable, `fallback_page_size` is asked for once when
    the first page is refused with 400; where a region may lack the endpoint,
    `absent_is_empty` reads a 404 on the first page as an empty listing. Both are counted
    (`vias_paging_fallbacks_total`).
    """

    end: PageEnd
    page_size: int = 0  # the largest the endpoint allows: fewest calls
    page_param: str = "page"
    size_param: str = "page_size"
    extra_params: Mapping[str, str] = field(default_factory=dict)
    fallback_page_size: int = 0  # 0: a 400 fails the poll
    absent_is_empty: bool = False


@dataclass(frozen=True, slots=True)
class PollContext(Generic[DataT]):
    """What an aggregator may use besides the pages of this poll."""

    previous: DataT | None  # the last good data of this source, kept through outages
    problem_tasks_limit: int
    now: float  # Unix time of this poll
    # Batch tasks with series of their own per project (GlobalConfig); None: no cap.
    batch_task_series_limit: int | None = None


class Aggregator(Protocol[ItemT_contra, DataT_co]):
    """Fed the new items of each page of one complete listing; makes the list's data."""

    def add(self, items: Sequence[ItemT_contra]) -> None: ...

    async def finish(self) -> DataT_co: ...


@dataclass(frozen=True, slots=True)
class ListView(Generic[DataT]):
    """One source's data as a renderer sees it."""

    project_id: str
    source: str
    data: DataT
    fresh: bool  # False once the data is older than the maximum age: counts are not shown
    shown_problems: Sequence[ProblemTask]  # this source's share of the per-project cap


# Yields the same families in the same order whatever its views: the exposition lays them
# out from a call with none (tests/test_collector.py checks against a whole render).
Renderer = Callable[[Sequence[ListView[DataT]]], Iterable[Metric]]

DetailT = TypeVar("DetailT", bound=ApiModel)
GONE: Literal["gone"] = "gone"  # a detail answered 404: the object is gone since the listing
# What one detail call gave: the detail, GONE, or None (failed, refused or skipped: it says
# nothing of the object). An object not asked (the budget) has no entry.
DetailAnswer: TypeAlias = DetailT | Literal["gone"] | None


@dataclass(frozen=True, kw_only=True)
class Details(Generic[DataT, DetailT]):
    """The further calls a list's data needs, one per object: which objects, most needed
    first, and what their answers make of the data. `exporter/details.py` asks for the
    first `detail_calls_per_poll` of `wanted` after each listing."""

    endpoint: str  # path template with {project_id} and `path_field`
    path_field: str
    model: type[DetailT]
    # (this poll's data, the last good data) -> ids to ask for, most needed first
    wanted: Callable[[DataT, DataT | None], Iterable[str]]
    # (this poll's data, the last good data, the answers by id) -> the completed data
    complete: Callable[[DataT, DataT | None, Mapping[str, DetailAnswer[DetailT]]], DataT]


@dataclass(frozen=True, kw_only=True)  # no slots: `ViasList[I, D](...)` sets an attribute
class ViasList(Generic[ItemT, DataT]):
    """Everything about one VIAS list endpoint."""

    name: str  # the config name and the `source` label value: a documented contract
    endpoint: str  # path template; also the `endpoint` label of the request metrics
    paging: Paging
    page_model: type[Page[ItemT]]
    states: tuple[str, ...]  # every state the list documents, exported even at zero
    aggregator: Callable[[PollContext[DataT]], Aggregator[ItemT, DataT]]
    # Lists rendered by the same function share its families; each family appears once.
    render: Renderer[DataT]
    # Further calls per object the data needs (made by exporter/details.py), if any.
    details: Details[DataT, Any] | None = None
    polled_by_default: bool = False  # when a target names no sources
    # Polled every this many target intervals: lists that cost a call per object or change
    # slowly are asked less often (a target's `poll_intervals` overrides it).
    interval_factor: int = 1
    same_items_as: str | None = None  # another list's items again: never enable both
    # A list of jobs: its problems page someone, so the API budget plan serves it first.
    jobs: bool = False
    # The data follows from the listing and the last data alone (no poll time, no sums
    # over polls): a listing byte for byte the last one keeps the last data, unparsed.
    same_listing_same_data: bool = False
