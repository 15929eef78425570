"""`GET /v1/{project_id}/infer/tasks`: the same jobs as the v2 list, through the older v1
API (enable one of the two, or never sum across `source`). `count` is per page; pages of
at most 50. Its items carry no `error`: the codes of named problem jobs come from the job
detail endpoint, `GET /v1/{project_id}/infer/tasks/{task_id}`."""

from __future__ import annotations

from exporter.lists.base import Paging, ViasList
from exporter.lists.jobs import (
    ERROR_CODE_DETAILS,
    TASK_STATES,
    JobAggregator,
    JobData,
    Task,
    TaskPage,
    render_jobs,
)

INFER_TASKS = ViasList[Task, JobData](
    name="infer_tasks",
    endpoint="/v1/{project_id}/infer/tasks",
    paging=Paging(end="short_page", page_size=50),
    page_model=TaskPage,
    states=TASK_STATES,
    aggregator=JobAggregator,
    render=render_jobs,
    jobs=True,
    same_listing_same_data=True,
    details=ERROR_CODE_DETAILS,
    same_items_as="tasks",
)
