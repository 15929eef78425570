"""`GET /v2/{project_id}/services/c-face-edge/tasks`: edge face-extraction jobs of the older
service. Its paging is undocumented: we send page/page_size and also cope with a server
that ignores them and returns everything at once; `count` is the total. Items name no
vendor or algorithm (the service is the algorithm, every job runs on the edge) and carry
no `error`: the codes of named problem jobs come from the v1 job detail endpoint."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from exporter.lists.base import Paging, ViasList
from exporter.lists.jobs import (
    ERROR_CODE_DETAILS,
    TASK_STATES,
    JobAggregator,
    JobData,
    State,
    render_jobs,
)
from exporter.models import ApiModel, Items, OptionalText, Page, Text

FACE_EXTRACTION_ALGORITHM = "face_extraction"


class FaceEdgeTask(ApiModel):
    id: OptionalText = None
    name: Text = ""
    state: State = "UNKNOWN"
    edge_pool_id: Text = ""

    vendor: ClassVar[str] = ""
    algorithm: ClassVar[str] = FACE_EXTRACTION_ALGORITHM
    deployment: ClassVar[str] = "edge"
    error_code: ClassVar[str] = ""
    video_source_name: ClassVar[str] = ""  # cameras are named by id in `input.data` only
    service_id: ClassVar[str] = ""


class FaceEdgeTaskPage(Page[FaceEdgeTask]):
    tasks: Items[FaceEdgeTask] = Field(default_factory=list)

    @property
    def items(self) -> list[FaceEdgeTask]:
        return self.tasks


FACE_EDGE_TASKS = ViasList[FaceEdgeTask, JobData](
    name="face_edge_tasks",
    endpoint="/v2/{project_id}/services/c-face-edge/tasks",
    paging=Paging(end="total", page_size=100),
    page_model=FaceEdgeTaskPage,
    states=TASK_STATES,
    aggregator=JobAggregator,
    render=render_jobs,
    jobs=True,
    same_listing_same_data=True,
    details=ERROR_CODE_DETAILS,
)
