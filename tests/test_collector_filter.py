"""`--metric-allowlist` and `--metric-denylist`: families filtered out of both formats, the
self-metrics included, served by the real web app over loopback and by the console script.

| change to the code (tried, seen red) | failing test |
|---|---|
| `allows` ignores the deny list | test_denied_families_leave_both_formats, test_parsing... |
| `allows` matches a prefix (`re.match`), not the whole name | test_parsing_and_matching |
| a counter matched only without `_total` | test_parsing_and_matching, test_allowed_only... |
| the self-metrics not filtered | test_denied..., test_allowed_only..., ..._filters_what_it_prints |
| `--once` does not pass the filter to the exporter | test_console_script_filters... |
| a bad expression not a configuration error | test_parsing_and_matching, ..._refuses_a_bad_filter |
"""

from __future__ import annotations

import aiohttp
import pytest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.lists import REGISTRY
from exporter.metric_filter import MetricFilter, MetricFilterError
from exporter.service import Exporter
from tests.support import RunningSimulator, make_config, serving, target
from tests.test_cli import env_for, run

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def test_parsing_and_matching() -> None:
    gauge = GaugeMetricFamily("vias_up", "")
    counter = CounterMetricFamily("vias_api_requests", "")
    deny = MetricFilter.parse(denylist="vias_api_requests_total, vias_poll_.*")
    assert deny.allows(gauge) and not deny.allows(counter)
    assert not deny.allows(GaugeMetricFamily("vias_poll_items", ""))
    assert MetricFilter.parse(denylist="vias_api_requests").allows(counter) is False
    allow = MetricFilter.parse(allowlist="vias_u")  # anchored: no prefix match
    assert not allow.allows(gauge)
    assert MetricFilter.parse(allowlist="vias_u.").allows(gauge)
    assert MetricFilter().allows(counter)
    with pytest.raises(MetricFilterError, match=r"^--metric-denylist: bad regular expression"):
        MetricFilter.parse(denylist="vias_up,vias_(")
    with pytest.raises(MetricFilterError, match="mutually exclusive"):
        MetricFilter.parse(allowlist="a", denylist="b")
    with pytest.raises(MetricFilterError, match="--metric-allowlist: no regular expression"):
        MetricFilter.parse(allowlist=" , ")


async def scrape_both(exporter: Exporter) -> tuple[set[str], set[str], str]:
    """Family names served in the text format and in OpenMetrics, and the text body."""
    async with serving(exporter) as url, aiohttp.ClientSession() as session:
        async with session.get(url + "/metrics") as response:
            text = await response.text()
        async with session.get(url + "/metrics", headers={"Accept": OPENMETRICS}) as response:
            openmetrics = await response.text()
    assert openmetrics.endswith("# EOF\n")
    return (
        {family.name for family in parse_text(text)},
        {family.name for family in parse_openmetrics(openmetrics)},
        text,
    )


async def test_denied_families_leave_both_formats(simulator: RunningSimulator) -> None:
    denied = "vias_batch_task_.*,vias_api_request_duration_seconds,vias_task_state_transitions"
    config = make_config([target(simulator.url, sources=list(REGISTRY))])
    async with Exporter(config, metric_filter=MetricFilter.parse(denylist=denied)) as exporter:
        await exporter.poll_all_once()
        simulator.world.step()  # transitions, with their _created
        await exporter.poll_all_once()
        text_names, om_names, text = await scrape_both(exporter)
    for names in (text_names, om_names):
        assert {"vias_up", "vias_tasks", "vias_api_requests", "vias_poll_duration_seconds"} <= names
        assert (
            not {
                "vias_batch_task_tasks",
                "vias_batch_task_info",
                "vias_batch_task_series_dropped",
                "vias_api_request_duration_seconds",
                "vias_task_state_transitions",
            }
            & names
        )
    assert "vias_task_state_transitions_created" not in text
    assert "vias_batch_task" not in text


async def test_allowed_only_families_are_served(simulator: RunningSimulator) -> None:
    config = make_config([target(simulator.url)])
    allowed = MetricFilter.parse(allowlist="vias_up,vias_api_requests_total")
    async with Exporter(config, metric_filter=allowed) as exporter:
        await exporter.poll_all_once()
        text_names, om_names, text = await scrape_both(exporter)
    assert text_names == om_names == {"vias_up", "vias_api_requests"}
    assert 'vias_up{project_id="p1",source="tasks"} 1.0' in text


async def test_console_script_filters_what_it_prints(simulator: RunningSimulator) -> None:
    code, out, err = await run(
        "--once", "--metric-allowlist", "vias_up,vias_tasks", env=env_for(simulator.url)
    )
    assert code == 0, err
    assert {family.name for family in parse_text(out)} == {"vias_up", "vias_tasks"}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--metric-denylist", "vias_(up"], "--metric-denylist: bad regular expression"),
        (["--metric-allowlist", "a", "--metric-denylist", "b"], "not allowed with"),
    ],
)
async def test_console_script_refuses_a_bad_filter(flags: list[str], message: str) -> None:
    code, _, err = await run("--check-config", *flags, env=env_for("http://127.0.0.1:9"))
    assert code == 2
    assert message in err
