"""The c-face-edge job list: edge face-extraction jobs, and its golden exposition (the
failed job's error code comes from the job detail endpoint)."""

from __future__ import annotations

from exporter.lists.face_edge_tasks import FACE_EDGE_TASKS, FaceEdgeTaskPage
from exporter.models import parse_model
from tests.lists.golden import assert_golden


def test_jobs_are_edge_face_extraction() -> None:
    body = b"""{"count": 1, "tasks": [{"id": "f1", "name": "door", "state": "RUNNING",
      "created_at": "2020-09-10T07:41:59Z", "input": {"type": "edgecamera"}}]}"""
    (job,) = parse_model(FaceEdgeTaskPage, body, "x").items
    assert (job.deployment, job.algorithm, job.vendor, job.error_code) == (
        "edge",
        "face_extraction",
        "",
        "",
    )


async def test_golden() -> None:
    await assert_golden(FACE_EDGE_TASKS)
