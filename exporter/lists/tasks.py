"""`GET /v2/{project_id}/tasks`: the jobs of a project (v2). `count` is documented as the
number on the page, so paging ends at a short page; page_size goes up to 1000."""

from __future__ import annotations

from exporter.lists.base import Paging, ViasList
from exporter.lists.jobs import TASK_STATES, JobAggregator, JobData, Task, TaskPage, render_jobs

TASKS = ViasList[Task, JobData](
    name="tasks",
    endpoint="/v2/{project_id}/tasks",
    paging=Paging(end="short_page", page_size=1000),
    page_model=TaskPage,
    states=TASK_STATES,
    aggregator=JobAggregator,
    render=render_jobs,
    jobs=True,
    same_listing_same_data=True,
    polled_by_default=True,
)
