"""The edge pools list and the nodes of each pool from its details: capacities in base
units, its golden exposition (one pool's details answer 404: the pool is counted, its nodes
are unknown), and over real HTTP against the simulator: a 400 on the page bound read
another way, a region without edge pools, a failed details call, the details budget, an
unknown node state set by the admin route.

Each change below was made and seen failing the test named:
- memory without a unit read as bytes (`unitless=1`): test_capacities_are_in_base_units,
  test_golden;
- `Mi` read as 10**6: test_quantities_are_read_in_bytes;
- no fallback page size (`fallback_page_size=0`):
  test_a_refused_page_bound_is_asked_again_with_smaller_pages;
- a 404 not read as empty (`absent_is_empty=False`):
  test_a_region_without_edge_pools_is_an_empty_listing;
- a failed details call re-raised:
  test_a_failed_details_call_leaves_the_pool_counted_and_its_nodes_unknown;
- the budget ignored, or Abnormal pools always first (starving the others):
  test_the_details_budget_goes_round_every_pool_abnormal_first;
- unknown node states dropped from the named nodes:
  test_an_unknown_node_state_is_kept_and_the_node_named.
"""

from __future__ import annotations

import aiohttp
import pytest

from exporter.lists.edge_pools import EDGE_POOLS, EdgeNode, quantity_bytes
from exporter.simulator import Fault
from tests.lists.golden import assert_golden
from tests.support import RunningSimulator, Samples, StartExporter, make_config, target

SOURCE = "edge_pools"
MIB, GIB = 1024**2, 1024**3


@pytest.mark.parametrize(
    ("raw", "unitless", "expected"),
    [
        ("15079Mi", 1, 15079 * MIB),
        ("16Gi", 1, 16 * GIB),
        ("8G", 1, 8e9),
        ("512", MIB, 512 * MIB),
        (15079, MIB, 15079 * MIB),
        ("1.5Ki", 1, 1536),
        ("lots", 1, 0),
        (None, MIB, 0),
        (True, MIB, 0),
    ],
)
def test_quantities_are_read_in_bytes(raw: object, unitless: int, expected: float) -> None:
    assert quantity_bytes(raw, unitless) == expected


def test_capacities_are_in_base_units() -> None:
    node = EdgeNode.model_validate(
        {
            "id": "n",
            "state": "ABNORMAL",
            "cpu": "8",
            "memory": 15079,
            "gpu_info": [{"capacity": "15079Mi"}, {"capacity": "15079Mi"}],
            "npu_info": None,
        }
    )
    assert (node.state, node.cpu, node.memory, len(node.gpu_info), len(node.npu_info)) == (
        "Abnormal",
        8.0,
        15079 * MIB,
        2,
        0,
    )
    assert EdgeNode.model_validate({"memory": "16Gi", "state": "Offline"}).memory == 16 * GIB
    assert EdgeNode.model_validate({"state": "Offline"}).state == "Offline"
    assert EdgeNode.model_validate({"state": None}).state == "Unknown"


async def test_golden() -> None:
    await assert_golden(EDGE_POOLS)


async def poll(
    start_exporter: StartExporter, url: str, times: int = 1, **settings: object
) -> Samples:
    config = make_config([target(url, sources=[SOURCE, "tasks"])], max_retries=0, **settings)
    async with start_exporter(config) as running:
        for _ in range(times):
            await running.exporter.poll_all_once()
        return await running.metrics()


def pool_requests(simulator: RunningSimulator) -> list[tuple[str, str]]:
    return [
        (r.query.get("page_size", ""), str(r.status))
        for r in simulator.sim.requests
        if r.path == "/v2/p1/edge-pools"
    ]


async def test_the_simulator_pools_are_counted_with_their_nodes(
    simulator: RunningSimulator, start_exporter: StartExporter
) -> None:
    samples = await poll(start_exporter, simulator.url)
    pools = simulator.sim.resources.project("p1").pools.values()
    nodes = [node for pool in pools for node in pool.nodes.values()]
    assert samples.value("vias_edge_pools", project_id="p1", state="Abnormal") == 1
    assert samples.value("vias_edge_pools", project_id="p1", state="Running") == 2
    assert sum(samples.series("vias_edge_nodes", project_id="p1").values()) == len(nodes)
    cores = samples.series("vias_edge_node_cpu_cores", project_id="p1")
    assert sum(cores.values()) == sum(node.cpu for node in nodes)
    memory = samples.series("vias_edge_node_memory_bytes", project_id="p1")
    assert sum(memory.values()) == sum(node.memory for node in nodes) * MIB
    gpus = samples.series("vias_edge_node_gpus", project_id="p1")
    assert sum(gpus.values()) == sum(len(node.gpu_info) for node in nodes)
    (abnormal,) = samples.series("vias_problem_edge_pool_info", project_id="p1")
    assert dict(abnormal)["state"] == "Abnormal"
    offline = samples.series("vias_problem_edge_node_info", project_id="p1", state="Offline")
    assert len(offline) == 1


async def test_a_refused_page_bound_is_asked_again_with_smaller_pages(
    simulator: RunningSimulator, start_exporter: StartExporter
) -> None:
    """A server that allows pages of at most 200 refuses our 1000 with 400: asked again
    once with pages of 100, counted; the poll succeeds with every pool."""
    simulator.sim.resources.edge_pool_max_page_size = 200
    samples = await poll(start_exporter, simulator.url)
    assert pool_requests(simulator) == [("1000", "400"), ("100", "200")]
    assert samples.value("vias_up", project_id="p1", source=SOURCE) == 1
    assert samples.value("vias_poll_items", project_id="p1", source=SOURCE) == 3
    fallbacks = samples.value(
        "vias_paging_fallbacks_total", project_id="p1", source=SOURCE, reason="page_bound"
    )
    assert fallbacks == 1


async def test_a_page_bound_refused_again_fails_the_poll_alone(
    simulator: RunningSimulator, start_exporter: StartExporter
) -> None:
    simulator.sim.resources.edge_pool_max_page_size = 50
    samples = await poll(start_exporter, simulator.url)
    assert pool_requests(simulator) == [("1000", "400"), ("100", "400")]
    assert samples.value("vias_up", project_id="p1", source=SOURCE) == 0
    errors = samples.value(
        "vias_poll_errors_total", project_id="p1", source=SOURCE, reason="client_error"
    )
    assert errors == 1
    assert samples.value("vias_up", project_id="p1", source="tasks") == 1


async def test_a_region_without_edge_pools_is_an_empty_listing(
    simulator: RunningSimulator,
    start_exporter: StartExporter,
    session: aiohttp.ClientSession,
) -> None:
    async with session.put(
        f"{simulator.url}/_sim/edge-pools/p1", json={"available": False}
    ) as response:
        assert response.status == 200
    samples = await poll(start_exporter, simulator.url)
    assert pool_requests(simulator) == [("1000", "404")]
    assert samples.value("vias_up", project_id="p1", source=SOURCE) == 1
    assert sum(samples.series("vias_edge_pools", project_id="p1").values()) == 0
    fallbacks = samples.value(
        "vias_paging_fallbacks_total", project_id="p1", source=SOURCE, reason="not_found"
    )
    assert fallbacks == 1
    assert samples.value("vias_up", project_id="p1", source="tasks") == 1


async def test_a_failed_details_call_leaves_the_pool_counted_and_its_nodes_unknown(
    simulator: RunningSimulator, start_exporter: StartExporter
) -> None:
    pools = simulator.sim.resources.project("p1").pools
    broken = next(iter(pools))
    simulator.sim.faults.add(Fault("server_error_json", match=f"/edge-pools/{broken}"))
    samples = await poll(start_exporter, simulator.url)
    assert samples.value("vias_up", project_id="p1", source=SOURCE) == 1
    assert sum(samples.series("vias_edge_pools", project_id="p1").values()) == 3
    missing = samples.series("vias_edge_pools_without_node_details", project_id="p1")
    assert {dict(labels)["reason"]: value for labels, value in missing.items()} == {
        "error": 1,
        "budget": 0,
    }
    known = sum(len(pool.nodes) for pool_id, pool in pools.items() if pool_id != broken)
    assert sum(samples.series("vias_edge_nodes", project_id="p1").values()) == known


async def test_the_details_budget_goes_round_every_pool_abnormal_first(
    simulator: RunningSimulator, start_exporter: StartExporter
) -> None:
    """One details call a poll for three pools: the Abnormal pool first, then each other
    pool in turn; a pool not asked this poll keeps the nodes of its last details."""
    pools = simulator.sim.resources.project("p1").pools
    config = make_config([target(simulator.url, sources=[SOURCE])], detail_calls_per_poll=1)
    missing_by_poll, asked = [], []
    async with start_exporter(config) as running:
        for _ in range(4):
            await running.exporter.poll_all_once()
            samples = await running.metrics()
            missing = samples.series(
                "vias_edge_pools_without_node_details", project_id="p1", reason="budget"
            )
            missing_by_poll.append(sum(missing.values()))
    for record in simulator.sim.requests:
        if record.path.startswith("/v2/p1/edge-pools/"):
            asked.append(record.path.rsplit("/", 1)[1])
    abnormal = next(pool_id for pool_id, pool in pools.items() if pool.state == "Abnormal")
    assert missing_by_poll == [2, 1, 0, 0]
    assert asked[0] == abnormal
    assert asked[3] == abnormal  # after every pool once, the Abnormal one is asked again
    assert set(asked[:3]) == set(pools)
    assert len(asked) == 4
    all_nodes = sum(len(pool.nodes) for pool in pools.values())
    assert sum(samples.series("vias_edge_nodes", project_id="p1").values()) == all_nodes


async def test_an_unknown_node_state_is_kept_and_the_node_named(
    simulator: RunningSimulator,
    start_exporter: StartExporter,
    session: aiohttp.ClientSession,
) -> None:
    pools = simulator.sim.resources.project("p1").pools
    pool_id, pool = next((i, p) for i, p in pools.items() if p.state == "Running")
    node_id = list(pool.nodes)[-1]
    async with session.put(
        f"{simulator.url}/_sim/edge-pools/p1/{pool_id}/nodes/{node_id}",
        json={"state": "Draining"},
    ) as response:
        assert response.status == 200
    samples = await poll(start_exporter, simulator.url)
    assert samples.value("vias_edge_nodes", project_id="p1", state="Draining") == 1
    (named,) = samples.series("vias_problem_edge_node_info", node_id=node_id)
    assert dict(named)["state"] == "Draining"
    assert dict(named)["edge_pool_id"] == pool_id


async def test_named_pools_and_nodes_are_capped_per_project_abnormal_first(
    simulator: RunningSimulator, start_exporter: StartExporter
) -> None:
    """The simulator's p1 has an Abnormal pool (all its nodes Abnormal) and an Offline
    node: with a cap of 1, one pool and one node are named, the Abnormal ones."""
    samples = await poll(start_exporter, simulator.url, problem_tasks_limit=1)
    (pool,) = samples.series("vias_problem_edge_pool_info", project_id="p1")
    (node,) = samples.series("vias_problem_edge_node_info", project_id="p1")
    assert dict(pool)["state"] == dict(node)["state"] == "Abnormal"
    assert samples.value("vias_edge_nodes", project_id="p1", state="Offline") == 1
