"""The golden test every list has (the kube-state-metrics `<kind>_test.go` pattern): the
list's answer pages in over real HTTP, its exposition out, byte for byte.

`golden/<list>.json` is the answer to every page request (a short page: one page is the
whole listing), `golden/<list>.details.json` maps ids to detail answers (job details, or
edge-pool details; others get 404), `golden/<list>.prom` is the expected exposition of
this list alone: the health families of its source (`HEALTH`) and the list's own
families, never another list's (an edit to one list's HELP text changes its own golden
file only). Regenerate after an intended change with `UPDATE_GOLDEN=1 pytest tests/lists`
and review the diff.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from aiohttp import web

from exporter.lists import edge_pools
from exporter.lists.base import ViasList
from exporter.lists.jobs import DETAIL_ENDPOINT
from exporter.service import Exporter
from tests.support import make_config, serving_app

GOLDEN = Path(__file__).parent / "golden"
PROJECT = "p1"
# The source's own health, fixed by the answers (not timings, not timestamps).
HEALTH = frozenset({"vias_up", "vias_poll_items", "vias_api_requests_total"})


def golden_app(vias_list: ViasList[Any, Any]) -> web.Application:
    listing = (GOLDEN / f"{vias_list.name}.json").read_bytes()
    details_file = GOLDEN / f"{vias_list.name}.details.json"
    details = json.loads(details_file.read_text()) if details_file.exists() else {}

    async def answer_listing(request: web.Request) -> web.Response:
        return web.Response(body=listing, content_type="application/json")

    async def answer_detail(request: web.Request) -> web.Response:
        (object_id,) = request.match_info.values()
        detail = details.get(object_id)
        if detail is None:
            return web.json_response({"error_code": "VIAS.10040001"}, status=404)
        return web.json_response(detail)

    app = web.Application()
    app.router.add_get(vias_list.endpoint.format(project_id=PROJECT), answer_listing)
    app.router.add_get(
        DETAIL_ENDPOINT.format(project_id=PROJECT, task_id="{task_id}"), answer_detail
    )
    app.router.add_get(
        edge_pools.DETAIL_ENDPOINT.format(project_id=PROJECT, edge_pool_id="{id}"), answer_detail
    )
    return app


def lines_of(exposition: str, families: frozenset[str]) -> str:
    """The header and sample lines of the families named (exactly: a counter's as
    `<name>_total`, its `_created` samples left out)."""
    kept = []
    for line in exposition.splitlines():
        name = line.split(" ")[2] if line.startswith("#") else re.split(r"[{ ]", line)[0]
        if name in families:
            kept.append(line)
    return "\n".join(kept) + "\n"


def own_families(vias_list: ViasList[Any, Any]) -> frozenset[str]:
    """The names of the families the list renders (a counter's samples: `_total`)."""
    return frozenset(
        name for family in vias_list.render([]) for name in (family.name, f"{family.name}_total")
    )


async def assert_golden(vias_list: ViasList[Any, Any]) -> None:
    async with serving_app(golden_app(vias_list)) as url:
        config = make_config(
            [
                {
                    "project_id": PROJECT,
                    "endpoint": url,
                    "auth_token": "x",
                    "sources": [vias_list.name],
                }
            ]
        )
        async with Exporter(config) as exporter:
            await exporter.poll_all_once()
            await exporter.poll_all_once()  # a second identical answer: no transitions
            exporter.exposition.render()
            text = exporter.exposition.body(openmetrics=False, gzipped=False).decode()
    actual = lines_of(text, HEALTH | own_families(vias_list))
    expected_file = GOLDEN / f"{vias_list.name}.prom"
    if os.environ.get("UPDATE_GOLDEN"):
        expected_file.write_text(actual)
    assert actual == expected_file.read_text()
