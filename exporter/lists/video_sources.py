"""`GET /v2/{project_id}/source/sources` (with `is_paged=true`: the API defaults to
unpaged): the project's video sources (cameras, streams). `total_number` is the total;
`video_source_number` is ignored (its meaning is undocumented); `quota_number` is the
project's video-source quota. Pages of 5..200.

Sources are counted by status, access type and type, and by quality problem. Only problem
sources are named (offline, abnormal, or with a quality problem), at most
`problem_tasks_limit` per project, those with jobs first: a camera is one object, so its
series stay while the list is down (its state is unknown, not recovered), like the named
problem jobs.

`status` is an object `{status, name, level}` whose values are undocumented (the filter's
codes 1/2/9 read online/offline/abnormal): a known code or name becomes that name, anything
else is kept as sent, lower-cased.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated

from prometheus_client.core import GaugeMetricFamily, Metric
from pydantic import BeforeValidator, Field

from exporter.lists.base import (
    ListView,
    NoProblemJobs,
    Paging,
    PollContext,
    ViasList,
    documented_then_seen,
)
from exporter.models import ApiModel, Deployment, Items, OptionalText, Page, Text

SOURCE_STATUSES: tuple[str, ...] = ("online", "offline", "abnormal")
PROBLEM_STATUSES: frozenset[str] = frozenset({"offline", "abnormal"})
UNKNOWN_STATUS = "unknown"
_STATUS_CODES = {"1": "online", "2": "offline", "9": "abnormal"}
# `video_source_quality`: the 13 documented kinds, spelled as documented.
QUALITY_PROBLEMS: tuple[str, ...] = (
    "Blurry",
    "ColorDistortion",
    "AbnormalLight",
    "ScreenSplash",
    "ScreenJitter",
    "ScreenMovement",
    "SceneUpheaval",
    "ScreenFreeze",
    "BlackScreen",
    "SnowNoise",
    "Occlude",
    "GrayScreen",
    "ScreenSmudge",
)
_QUALITY_BY_LOWER = {kind.lower(): kind for kind in QUALITY_PROBLEMS}


def _clean(raw: object) -> str:
    return "" if raw is None or isinstance(raw, dict | list) else str(raw).strip()


def normalize_status(raw: object) -> str:
    """`status` as `{status, name, level}`, a bare code or a bare name, to one label value:
    a known code (1/2/9) or name first, else the name or code as sent (lower-cased)."""
    candidates = [raw.get("status"), raw.get("name")] if isinstance(raw, dict) else [raw]
    texts = [_clean(c).lower() for c in candidates]
    for text in texts:
        if text in _STATUS_CODES:
            return _STATUS_CODES[text]
        if text in SOURCE_STATUSES:
            return text
    return next((text for text in reversed(texts) if text), UNKNOWN_STATUS)


def normalize_quality(raw: object) -> tuple[str, ...]:
    """A list of kinds (strings, or objects naming one) to the documented spelling; an
    unknown kind is kept as sent. Sorted, each once."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raw = [raw]
    kinds = set()
    for entry in raw:
        if isinstance(entry, dict):
            entry = next((entry[k] for k in ("name", "type", "quality") if entry.get(k)), "")
        text = _clean(entry)
        if text:
            kinds.add(_QUALITY_BY_LOWER.get(text.lower(), text))
    return tuple(sorted(kinds))


def lenient_count(raw: object) -> int | None:
    """A number, a digit string, or missing/null/garbage (None)."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return None
    try:
        return int(raw.strip() if isinstance(raw, str) else raw)
    except (ValueError, OverflowError):
        return None


if TYPE_CHECKING:
    Status = str
    Quality = tuple[str, ...]
    Count = int | None
    LowerText = str
else:
    Status = Annotated[str, BeforeValidator(normalize_status)]
    Quality = Annotated[tuple[str, ...], BeforeValidator(normalize_quality)]
    Count = Annotated[int | None, BeforeValidator(lenient_count)]
    LowerText = Annotated[str, BeforeValidator(lambda raw: _clean(raw).lower())]


class VideoSource(ApiModel):
    id: OptionalText = Field(default=None, alias="video_source_id")
    name: Text = Field(default="", alias="video_source_name")
    status: Status = UNKNOWN_STATUS
    access_type: Deployment = ""
    type: LowerText = ""
    num_tasks: Count = None
    quality: Quality = Field(default=(), alias="video_source_quality")


@dataclass(frozen=True, slots=True)
class ListedSource:
    """A source with what its page said about the whole project (the page's `items`
    carry it to the aggregator, which sees items only)."""

    source: VideoSource
    quota: int | None

    @property
    def id(self) -> str | None:
        return self.source.id


class VideoSourcePage(Page[ListedSource]):
    count: Count = Field(default=None, alias="total_number")
    quota_number: Count = None
    video_source_list: Items[VideoSource] = Field(default_factory=list)

    @property
    def items(self) -> list[ListedSource]:
        return [ListedSource(source, self.quota_number) for source in self.video_source_list]


@dataclass(frozen=True, slots=True)
class ProblemSource:
    video_source_id: str
    name: str
    status: str
    access_type: str
    type: str
    quality: str  # the quality problems, comma-separated
    num_tasks: int


def problem_source_rank(problem: ProblemSource) -> tuple[int, str]:
    """Offline/abnormal with jobs first (they page), then offline/abnormal, then quality."""
    down = problem.status in PROBLEM_STATUSES
    return (0 if down and problem.num_tasks > 0 else 1 if down else 2, problem.video_source_id)


SourceGroup = tuple[str, str]  # access_type, type


@dataclass(frozen=True, slots=True)
class VideoSourceData(NoProblemJobs):
    status_counts: Mapping[SourceGroup, Mapping[str, int]]
    quality_counts: Mapping[str, int]
    quota: int | None
    problem_sources: tuple[ProblemSource, ...]
    problem_sources_dropped: int
    item_count: int


class VideoSourceAggregator:
    """Counts each source once (offset paging can list one twice); sources without an id
    are each counted."""

    def __init__(self, context: PollContext[VideoSourceData]) -> None:
        self._limit = context.problem_tasks_limit
        self._seen: set[str] = set()
        self._counts: dict[SourceGroup, Counter[str]] = {}
        self._quality: Counter[str] = Counter()
        self._problems: list[ProblemSource] = []
        self._quota: int | None = None
        self._items = 0

    def add(self, items: Sequence[ListedSource]) -> None:
        for item in items:
            source = item.source
            if item.quota is not None:
                self._quota = item.quota
            if source.id is not None:
                if source.id in self._seen:
                    continue
                self._seen.add(source.id)
            self._items += 1
            group = (source.access_type, source.type)
            self._counts.setdefault(group, Counter())[source.status] += 1
            self._quality.update(source.quality)
            if source.status in PROBLEM_STATUSES or source.quality:
                self._problems.append(
                    ProblemSource(
                        video_source_id=source.id or "",
                        name=source.name,
                        status=source.status,
                        access_type=source.access_type,
                        type=source.type,
                        quality=",".join(source.quality),
                        num_tasks=source.num_tasks or 0,
                    )
                )

    async def finish(self) -> VideoSourceData:
        ranked = sorted(dict.fromkeys(self._problems), key=problem_source_rank)
        kept = tuple(ranked[: self._limit])
        return VideoSourceData(
            status_counts=MappingProxyType(
                {group: MappingProxyType(dict(c)) for group, c in self._counts.items()}
            ),
            quality_counts=MappingProxyType(dict(self._quality)),
            quota=self._quota,
            problem_sources=kept,
            problem_sources_dropped=len(ranked) - len(kept),
            item_count=self._items,
        )


def render_video_sources(views: Sequence[ListView[VideoSourceData]]) -> Iterator[Metric]:
    sources = GaugeMetricFamily(
        "vias_video_sources",
        "Video sources by status, access type and type.",
        labels=["project_id", "status", "access_type", "type"],
    )
    quality = GaugeMetricFamily(
        "vias_video_source_quality_problems",
        "Video sources with each quality problem.",
        labels=["project_id", "problem"],
    )
    quota = GaugeMetricFamily(
        "vias_video_source_quota", "The project's video-source quota.", labels=["project_id"]
    )
    keys = ["project_id", "video_source_id", "video_source_name"]
    problems = GaugeMetricFamily(
        "vias_video_source_problem_info",
        "1 per video source offline, abnormal or with a quality problem (capped per project).",
        labels=[*keys, "status", "access_type", "type", "quality_problems"],
    )
    problem_tasks = GaugeMetricFamily(
        "vias_video_source_problem_tasks",
        "Jobs using each named problem video source.",
        labels=keys,
    )
    for view in views:
        data = view.data
        if view.fresh:
            for (access_type, source_type), counts in data.status_counts.items():
                for status in documented_then_seen(SOURCE_STATUSES, counts):
                    sources.add_metric(
                        [view.project_id, status, access_type, source_type], counts.get(status, 0)
                    )
            for problem in documented_then_seen(QUALITY_PROBLEMS, data.quality_counts):
                quality.add_metric([view.project_id, problem], data.quality_counts.get(problem, 0))
            if data.quota is not None:
                quota.add_metric([view.project_id], data.quota)
        for source in data.problem_sources:
            ids = [view.project_id, source.video_source_id, source.name]
            problems.add_metric(
                [*ids, source.status, source.access_type, source.type, source.quality], 1.0
            )
            problem_tasks.add_metric(ids, source.num_tasks)
    yield from (sources, quality, quota, problems, problem_tasks)


VIDEO_SOURCES = ViasList[ListedSource, VideoSourceData](
    name="video_sources",
    endpoint="/v2/{project_id}/source/sources",
    paging=Paging(
        end="total", page_size=200, page_param="page_num", extra_params={"is_paged": "true"}
    ),
    page_model=VideoSourcePage,
    states=SOURCE_STATUSES,
    aggregator=VideoSourceAggregator,
    render=render_video_sources,
    # opt-in: a 403 for an IAM user without the right would pause the project (docs/metrics.md)
)
