"""Golden test of the job lists at once: fixed API answers (and job details), served over
real HTTP, to the exact exposition text of their health and their families (no other
list's): the lists' shared families, their order, and the per-project cap across lists.
Each list has its own golden test in tests/lists/.

Regenerate after an intended change with `UPDATE_GOLDEN=1 pytest tests/test_golden.py`
and review the diff of tests/golden/expected.prom.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from exporter.lists import REGISTRY
from exporter.service import Exporter
from tests.lists.golden import HEALTH, lines_of, own_families
from tests.support import make_config, serving_app

GOLDEN = Path(__file__).parent / "golden"
LIST_GOLDEN = Path(__file__).parent / "lists" / "golden"
SOURCES = ["tasks", "batch_tasks", "infer_tasks", "face_edge_tasks"]
ANSWERS = {
    "/v2/p1/tasks": "tasks.json",
    "/v1/p1/infer/tasks": "tasks.json",
    "/v2/p1/batch-tasks": "batch-tasks.json",
    "/v2/p1/services/c-face-edge/tasks": "face-edge-tasks.json",
}


@pytest.fixture
async def fixed_api() -> AsyncIterator[str]:
    app = web.Application()
    for path, name in ANSWERS.items():
        body = (GOLDEN / name).read_bytes()

        async def answer(request: web.Request, body: bytes = body) -> web.Response:
            return web.Response(body=body, content_type="application/json")

        app.router.add_get(path, answer)
    details = {
        **json.loads((LIST_GOLDEN / "infer_tasks.details.json").read_text()),
        **json.loads((LIST_GOLDEN / "face_edge_tasks.details.json").read_text()),
    }

    async def answer_detail(request: web.Request) -> web.Response:
        return web.json_response(details[request.match_info["task_id"]])

    app.router.add_get("/v1/p1/infer/tasks/{task_id}", answer_detail)
    async with serving_app(app) as url:
        yield url


async def test_fixed_answers_give_the_expected_exposition(fixed_api: str) -> None:
    config = make_config(
        [
            {
                "project_id": "p1",
                "endpoint": fixed_api,
                "auth_token": "x",
                "sources": SOURCES,
            }
        ]
    )
    async with Exporter(config) as exporter:
        await exporter.poll_all_once()
        await exporter.poll_all_once()  # a second identical answer: no transitions
        exporter.exposition.render()
        text = exporter.exposition.body(openmetrics=False, gzipped=False).decode()
    actual = lines_of(text, HEALTH.union(*(own_families(REGISTRY[s]) for s in SOURCES)))
    expected_file = GOLDEN / "expected.prom"
    if os.environ.get("UPDATE_GOLDEN"):
        expected_file.write_text(actual)
    assert actual == expected_file.read_text()
