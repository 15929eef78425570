"""Every registered list is complete: its test module with a golden exposition, a handler
in the simulator, a place in the configuration choices, and its line in the README's
`VIAS_SOURCES` and in docs/metrics.md's table of API costs (which must say what the
descriptor says). A list registered without one of its pieces fails here (or, for the
descriptor itself, in mypy). What is expected is derived from the registry, never a list
of names kept here.

Break → failing test (each seen red once): a list left out of the README's
`VIAS_SOURCES` → test_the_readme_names_every_list_and_the_defaults; a page size in the
cost table other than the descriptor's → test_the_api_cost_table_matches_each_lists_descriptor.
"""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest

from exporter.lists import DEFAULT_LISTS, DISTINCT_LISTS, REGISTRY
from exporter.service import Exporter
from exporter.settings import TargetConfig
from tests.support import RunningSimulator, make_config

HERE = Path(__file__).parent
README = HERE.parents[1] / "README.md"
METRICS_DOC = HERE.parents[1] / "docs" / "metrics.md"
LISTS = sorted(REGISTRY)
TOKEN_TARGET = {"project_id": "p", "region": "r", "auth_token": "t"}


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
    target = TargetConfig.model_validate(dict(TOKEN_TARGET, sources=name), context=REGISTRY)
    assert target.sources == (name,)


def test_an_unknown_list_names_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown source; choose from tasks, batch_tasks"):
        TargetConfig.model_validate(dict(TOKEN_TARGET, sources="cameras"), context=REGISTRY)


def test_the_demo_polls_every_list_once() -> None:
    """DISTINCT_LISTS: every list, in registry order, but one repeating another's items
    (whose own list is polled instead)."""
    for name, vias_list in REGISTRY.items():
        repeats = vias_list.same_items_as
        if repeats is None:
            assert name in DISTINCT_LISTS
        else:
            assert name not in DISTINCT_LISTS and repeats in DISTINCT_LISTS
    assert list(DISTINCT_LISTS) == [name for name in REGISTRY if name in DISTINCT_LISTS]


# --- the user-facing docs name every list as the registry does ---------------------------


def _backticked(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)


def test_the_readme_names_every_list_and_the_defaults() -> None:
    row = next(
        line for line in README.read_text().splitlines() if line.startswith("| `VIAS_SOURCES`")
    )
    choices, default = row.split("; default", 1)
    assert _backticked(choices)[1:] == list(REGISTRY)  # after `VIAS_SOURCES` itself
    assert _backticked(default)[0] == ",".join(DEFAULT_LISTS)


def _cost_table() -> dict[str, tuple[str, str]]:
    """docs/metrics.md's table of lists: source -> (default column, calls per poll)."""
    text = METRICS_DOC.read_text()
    table = text[text.index("| source | default | calls per poll |") :].split("\n\n", 1)[0]
    rows = [line.split("|")[1:4] for line in table.splitlines()[2:]]
    return {_backticked(name)[0]: (default.strip(), calls.strip()) for name, default, calls in rows}


def test_the_api_cost_table_matches_each_lists_descriptor() -> None:
    """One row per list in registry order; the default column, the pages (page size, and
    one more page where a short page ends the listing), the detail calls and the interval
    factor as the descriptor says."""
    table = _cost_table()
    assert list(table) == list(REGISTRY)
    flat = " ".join(METRICS_DOC.read_text().split())
    for name, vias_list in REGISTRY.items():
        default, calls = table[name]
        assert default.startswith("yes" if vias_list.polled_by_default else "no"), name
        if vias_list.same_items_as:
            assert f"same jobs as `{vias_list.same_items_as}`" in default, name
        items = "(N+1)" if vias_list.paging.end == "short_page" else "N"
        assert calls.startswith(f"⌈{items}/{vias_list.paging.page_size}⌉"), name
        assert ("detail_calls_per_poll" in calls) == (vias_list.details is not None), name
        if vias_list.interval_factor > 1:
            assert f"`{name}`, which polls every {vias_list.interval_factor}th interval" in flat


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
