"""The v1 job list: items without `error`, whose problem jobs get their error codes from
the job detail endpoint (golden/infer_tasks.details.json), and its golden exposition."""

from __future__ import annotations

from exporter.lists.infer_tasks import INFER_TASKS
from tests.lists.golden import assert_golden


async def test_golden_with_error_codes_from_the_job_details() -> None:
    await assert_golden(INFER_TASKS)
