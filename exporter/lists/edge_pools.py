"""`GET /v2/{project_id}/edge-pools`: the edge pools that run a project's edge jobs, and
through one details call per pool (`GET /v2/{project_id}/edge-pools/{edge_pool_id}`) their
nodes. `count` is the total.

Paging: the SDK swaps the descriptions of `page_size` (1..1000 in the sensible reading)
and `page_num` (1..10000), so a server may refuse our page of 1000 with 400: the first page
is then asked again, once, with pages of 100 (counted). A region without edge pools may
answer 404: that is an empty listing (counted), not a failed poll.

Details cost one call per pool, at most `detail_calls_per_poll` a poll: the pools whose
details are oldest first (Abnormal first among equals), so a small budget goes round them
all. A pool skipped for the budget keeps the nodes of its last details; one whose details
call fails, or that was never detailed, has unknown nodes: it is counted as a pool, and in
`vias_edge_pools_without_node_details`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Annotated

from prometheus_client.core import GaugeMetricFamily, Metric
from pydantic import BeforeValidator, Field

from exporter.lists.base import (
    DetailAnswer,
    Details,
    ListView,
    NoProblemJobs,
    Paging,
    PollContext,
    ViasList,
    documented_then_seen,
)
from exporter.models import ApiModel, Items, OptionalText, Page, Text

# The pool states the API documents; node states are undocumented: the same two are
# exported at zero, any other value is kept as sent.
EDGE_STATES: tuple[str, ...] = ("Running", "Abnormal")
HEALTHY_STATE = "Running"
UNKNOWN_EDGE_STATE = "Unknown"
DETAIL_ENDPOINT = "/v2/{project_id}/edge-pools/{edge_pool_id}"
MISSING_REASONS: tuple[str, ...] = ("budget", "error")
_CANONICAL = {state.lower(): state for state in EDGE_STATES}

_QUANTITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGTP]i?|k)?[Bb]?\s*$")
_FACTORS = {
    None: 1,
    "k": 1000,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "P": 1000**5,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "Pi": 1024**5,
}
MIB = 1024**2


def normalize_edge_state(raw: object) -> str:
    """Running/Abnormal whatever their case; any other value kept as sent (trimmed)."""
    if raw is None or str(raw).strip() == "":
        return UNKNOWN_EDGE_STATE
    text = str(raw).strip()
    return _CANONICAL.get(text.lower(), text)


def quantity_bytes(raw: object, unitless: int = 1) -> float:
    """A capacity in bytes: "15079Mi", "16Gi", "8G", or a plain number in `unitless` bytes
    (node `memory` is an int without a unit in the SDK: read as MiB). Unreadable: 0."""
    if raw is None or isinstance(raw, bool):
        return 0.0
    if isinstance(raw, int | float):
        return float(raw) * unitless
    match = _QUANTITY.match(str(raw))
    if match is None:
        return 0.0
    number, unit = float(match.group(1)), match.group(2)
    return number * (unitless if unit is None else _FACTORS[unit])


def _number(raw: object) -> float:
    """CPU cores: a number or its text; unreadable: 0."""
    if not isinstance(raw, int | float | str) or isinstance(raw, bool):
        return 0.0
    try:
        return float(raw)
    except ValueError:
        return 0.0


if TYPE_CHECKING:
    EdgeState = str
    Cores = float
    MemoryBytes = float
else:
    EdgeState = Annotated[str, BeforeValidator(normalize_edge_state)]
    Cores = Annotated[float, BeforeValidator(_number)]
    MemoryBytes = Annotated[float, BeforeValidator(partial(quantity_bytes, unitless=MIB))]


class Accelerator(ApiModel):
    name: Text = ""
    type: Text = ""
    capacity: Text = ""


class EdgeNode(ApiModel):
    id: OptionalText = None
    name: Text = ""
    state: EdgeState = UNKNOWN_EDGE_STATE
    cpu: Cores = 0.0
    memory: MemoryBytes = 0.0
    gpu_info: Items[Accelerator] = Field(default_factory=list)
    npu_info: Items[Accelerator] = Field(default_factory=list)


class EdgePool(ApiModel):
    id: OptionalText = None
    name: Text = ""
    state: EdgeState = UNKNOWN_EDGE_STATE


class EdgePoolDetail(EdgePool):
    nodes: Items[EdgeNode] = Field(default_factory=list)


class EdgePoolPage(Page[EdgePool]):
    edge_pools: Items[EdgePool] = Field(default_factory=list)

    @property
    def items(self) -> list[EdgePool]:
        return self.edge_pools


@dataclass(frozen=True, slots=True)
class NodeSummary:
    node_id: str
    name: str
    state: str
    cpu_cores: float
    memory_bytes: float
    gpus: int
    npus: int


@dataclass(frozen=True, slots=True)
class PoolSummary:
    pool_id: str
    name: str
    state: str
    nodes: tuple[NodeSummary, ...] | None = None  # None: unknown
    detailed_at: float | None = None  # Unix time of the details the nodes come from
    missing: str = ""  # why the nodes are unknown: budget, error


@dataclass(frozen=True, slots=True)
class EdgePoolData(NoProblemJobs):
    pools: tuple[PoolSummary, ...]
    problem_limit: int  # named pools, and named nodes, per project
    polled_at: float
    # The pools and nodes not Running that the exposition names (within the limit),
    # ranked once a poll rather than at every render.
    problem_pools: tuple[PoolSummary, ...] = ()
    problem_nodes: tuple[tuple[PoolSummary, NodeSummary], ...] = ()

    @property
    def item_count(self) -> int:
        return len(self.pools)


class EdgePoolAggregator:
    """One summary per pool id (a pool listed twice counts once); nodes come from its details."""

    def __init__(self, context: PollContext[EdgePoolData]) -> None:
        self._context = context
        self._pools: dict[str, PoolSummary] = {}
        self._anonymous: list[PoolSummary] = []

    def add(self, pools: Sequence[EdgePool]) -> None:
        for pool in pools:
            summary = PoolSummary(pool.id or "", pool.name, pool.state)
            if pool.id is None:
                self._anonymous.append(summary)
            else:
                self._pools.setdefault(pool.id, summary)

    async def finish(self) -> EdgePoolData:
        return _with_named_problems(
            EdgePoolData(
                pools=(*self._pools.values(), *self._anonymous),
                problem_limit=self._context.problem_tasks_limit,
                polled_at=self._context.now,
            )
        )


def _node(node: EdgeNode) -> NodeSummary:
    return NodeSummary(
        node.id or "",
        node.name,
        node.state,
        node.cpu,
        node.memory,
        len(node.gpu_info),
        len(node.npu_info),
    )


def _pools_wanted(data: EdgePoolData, previous: EdgePoolData | None) -> list[str]:
    """The pools to detail, the least recently detailed first (never detailed first;
    Abnormal first among equals), so a budget smaller than the pools goes round them all."""
    known = {pool.pool_id: pool for pool in previous.pools} if previous else {}

    def urgency(pool: PoolSummary) -> tuple[float, bool, str]:
        before = known.get(pool.pool_id)
        detailed_at = before.detailed_at if before and before.detailed_at is not None else -1.0
        return (detailed_at, pool.state == HEALTHY_STATE, pool.pool_id)

    ranked = sorted((pool for pool in data.pools if pool.pool_id), key=urgency)
    return [pool.pool_id for pool in ranked]


def _with_nodes(
    data: EdgePoolData,
    previous: EdgePoolData | None,
    answers: Mapping[str, DetailAnswer[EdgePoolDetail]],
) -> EdgePoolData:
    """The nodes of each pool from its details this poll, else from its last details; a
    pool whose details call failed (or that has no id) has unknown nodes (`error`), one
    never detailed yet and not asked this poll too (`budget`)."""
    known = {pool.pool_id: pool for pool in previous.pools} if previous else {}
    pools = []
    for pool in data.pools:
        if not pool.pool_id:  # cannot be asked for
            pool = replace(pool, missing="error")
        elif pool.pool_id in answers:
            detail = answers[pool.pool_id]
            if isinstance(detail, EdgePoolDetail):
                nodes = tuple(_node(node) for node in detail.nodes)
                pool = replace(pool, nodes=nodes, detailed_at=data.polled_at)
            else:
                pool = replace(pool, missing="error")
        else:
            before = known.get(pool.pool_id)
            if before is not None and before.nodes is not None:
                pool = replace(pool, nodes=before.nodes, detailed_at=before.detailed_at)
            else:
                pool = replace(pool, missing="budget")
        pools.append(pool)
    return _with_named_problems(replace(data, pools=tuple(pools)))


def _problem_order(state: str, object_id: str) -> tuple[int, str, str]:
    """Abnormal first, then other states not Running, then by id."""
    return (0 if state == "Abnormal" else 1, state, object_id)


def _with_named_problems(data: EdgePoolData) -> EdgePoolData:
    bad_pools = sorted(
        (pool for pool in data.pools if pool.state != HEALTHY_STATE),
        key=lambda pool: _problem_order(pool.state, pool.pool_id),
    )
    bad_nodes = sorted(
        (
            (pool, node)
            for pool in data.pools
            if pool.nodes is not None
            for node in pool.nodes
            if node.state != HEALTHY_STATE
        ),
        key=lambda pair: (*_problem_order(pair[1].state, pair[1].node_id), pair[0].pool_id),
    )
    return replace(
        data,
        problem_pools=tuple(bad_pools[: data.problem_limit]),
        problem_nodes=tuple(bad_nodes[: data.problem_limit]),
    )


def render_edge_pools(views: Sequence[ListView[EdgePoolData]]) -> Iterator[Metric]:
    """Counts and capacities while fresh; problem pools and nodes named while known."""
    where = ["project_id", "state"]
    pools = GaugeMetricFamily("vias_edge_pools", "Edge pools by state.", labels=where)
    nodes = GaugeMetricFamily(
        "vias_edge_nodes", "Edge nodes by state, of the pools whose nodes are known.", labels=where
    )
    capacities = (
        GaugeMetricFamily("vias_edge_node_cpu_cores", "CPU cores of edge nodes.", labels=where),
        GaugeMetricFamily(
            "vias_edge_node_memory_bytes", "Memory of edge nodes in bytes.", labels=where
        ),
        GaugeMetricFamily("vias_edge_node_gpus", "GPUs of edge nodes.", labels=where),
        GaugeMetricFamily("vias_edge_node_npus", "NPUs of edge nodes.", labels=where),
    )
    missing = GaugeMetricFamily(
        "vias_edge_pools_without_node_details",
        "Edge pools whose nodes are unknown this poll, by reason (budget, error).",
        labels=["project_id", "reason"],
    )
    problem_pools = GaugeMetricFamily(
        "vias_problem_edge_pool_info",
        "1 for each edge pool not Running (capped per project).",
        labels=["project_id", "edge_pool_id", "edge_pool_name", "state"],
    )
    problem_nodes = GaugeMetricFamily(
        "vias_problem_edge_node_info",
        "1 for each edge node not Running (capped per project).",
        labels=["project_id", "edge_pool_id", "edge_pool_name", "node_id", "node_name", "state"],
    )
    for view in views:
        project, data = view.project_id, view.data
        if view.fresh:
            _add_by_state(pools, project, Counter(pool.state for pool in data.pools))
            totals: dict[str, list[float]] = {}
            known_nodes = (
                node for pool in data.pools if pool.nodes is not None for node in pool.nodes
            )
            for node in known_nodes:
                sums = totals.setdefault(node.state, [0, 0.0, 0.0, 0, 0])
                for index, value in enumerate(
                    (1, node.cpu_cores, node.memory_bytes, node.gpus, node.npus)
                ):
                    sums[index] += value
            for index, family in enumerate((nodes, *capacities)):
                _add_by_state(family, project, {s: v[index] for s, v in totals.items()})
            reasons = Counter(pool.missing for pool in data.pools if pool.nodes is None)
            for reason in MISSING_REASONS:
                missing.add_metric([project, reason], reasons.get(reason, 0))
        for pool in data.problem_pools:
            problem_pools.add_metric([project, pool.pool_id, pool.name, pool.state], 1.0)
        for pool, node in data.problem_nodes:
            problem_nodes.add_metric(
                [project, pool.pool_id, pool.name, node.node_id, node.name, node.state], 1.0
            )
    yield from (pools, nodes, *capacities, missing, problem_pools, problem_nodes)


def _add_by_state(family: GaugeMetricFamily, project: str, values: Mapping[str, float]) -> None:
    for state in documented_then_seen(EDGE_STATES, values):
        family.add_metric([project, state], values.get(state, 0))


EDGE_POOLS = ViasList[EdgePool, EdgePoolData](
    name="edge_pools",
    endpoint="/v2/{project_id}/edge-pools",
    paging=Paging(
        end="total",
        page_size=1000,
        page_param="page_num",
        extra_params={"is_paged": "true"},
        fallback_page_size=100,
        absent_is_empty=True,
    ),
    page_model=EdgePoolPage,
    states=EDGE_STATES,
    aggregator=EdgePoolAggregator,
    render=render_edge_pools,
    details=Details[EdgePoolData, EdgePoolDetail](
        endpoint=DETAIL_ENDPOINT,
        path_field="edge_pool_id",
        model=EdgePoolDetail,
        wanted=_pools_wanted,
        complete=_with_nodes,
    ),
    # One details call per pool: every 5th target interval (5 minutes by default).
    interval_factor=5,
)
