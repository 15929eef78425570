"""Every registered list is complete: its test module with a golden exposition, a handler
in the simulator, and a place in the configuration choices. A list registered without one
of its pieces fails here (or, for the descriptor itself, in mypy)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from exporter.lists import DEFAULT_LISTS, DISTINCT_LISTS, REGISTRY
from exporter.service import Exporter
from exporter.settings import TargetConfig
from tests.support import RunningSimulator, make_config

HERE = Path(__file__).parent
LISTS = sorted(REGISTRY)


@pytest.mark.parametrize("name", LISTS)
def test_each_list_has_its_golden_test(name: str) -> None:
    module = HERE / f"test_{name}.py"
    assert module.is_file(), f"tests/lists/test_{name}.py is missing"
    assert "assert_golden(" in module.read_text()
    assert (HERE / "golden" / f"{name}.json").is_file()
    assert (HERE / "golden" / f"{name}.prom").is_file()


@pytest.mark.parametrize("name", LISTS)
async def test_the_simulator_serves_each_list(name: str, simulator: RunningSimulator) -> None:
    vias_list = REGISTRY[name]
    url = simulator.url + vias_list.endpoint.format(project_id="p1")
    params = {**vias_list.paging.extra_params}
    if vias_list.paging.end != "unpaged":
        params[vias_list.paging.page_param] = "1"
        params[vias_list.paging.size_param] = str(vias_list.paging.page_size)
    assert simulator.sim.token is not None
    headers = {"X-Auth-Token": simulator.sim.token}
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, params=params, headers=headers) as response,
    ):
        assert response.status == 200, await response.text()
        page = vias_list.page_model.model_validate_json(await response.read())
    assert page.items, f"the simulator lists no {name}"


@pytest.mark.parametrize("name", LISTS)
def test_each_list_is_a_configuration_choice(name: str) -> None:
    target = TargetConfig(project_id="p", region="r", auth_token="t", sources=name)
    assert target.sources == (name,)


def test_an_unknown_list_names_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown source; choose from tasks, batch_tasks"):
        TargetConfig(project_id="p", region="r", auth_token="t", sources="cameras")


def test_defaults_and_the_demo_come_from_the_registry() -> None:
    assert DEFAULT_LISTS == ("tasks", "batch_tasks")
    assert DISTINCT_LISTS == (
        "tasks",
        "batch_tasks",
        "face_edge_tasks",
        "algorithm_services",
        "edge_pools",
        "video_sources",
        "video_groups",
    )
    for vias_list in REGISTRY.values():
        assert vias_list.same_items_as in (None, *REGISTRY)


async def test_pollers_take_each_lists_interval() -> None:
    config = make_config(
        [
            {
                "project_id": "p1",
                "endpoint": "http://127.0.0.1:9",
                "auth_token": "t",
                "poll_interval_seconds": 10,
                "sources": ["tasks", "edge_pools", "video_groups"],
                "poll_intervals": {"video_groups": 600},
            }
        ]
    )
    async with Exporter(config) as exporter:
        intervals = {poller.source: poller.interval for poller in exporter.pollers}
        landing = {s.source: s.interval_seconds for s in exporter.store.current.sources.values()}
    assert intervals == landing == {"tasks": 10, "edge_pools": 50, "video_groups": 600}
    assert all(vias_list.interval_factor >= 1 for vias_list in REGISTRY.values())
