"""The simulated objects (jobs, batch tasks, edge face-extraction jobs) and the fixed
vocabularies a seeded world draws from."""

from __future__ import annotations

import contextlib
import gc
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

Deployment = Literal["cloud", "edge"]

VENDORS = ("huawei", "hikvision", "dahua", "sensetime", "megvii")
ALGORITHMS = ("helmet_detection", "fire_smoke", "face_extraction", "license_plate", "intrusion")
VIDEO_GROUPS = ("east-gate", "warehouse", "parking-lot", "lobby", "loading-dock", "perimeter")
PRIORITIES = ("low", "medium", "high")
HEALTHY_STATES = ("RUNNING", "STOPPED", "PENDING", "SUCCEEDED", "STARTING")
FAILED_STATES = ("CREATE_FAILED", "START_FAILED", "FAILED")
ERRORS: dict[str, tuple[str, str]] = {
    "ABNORMAL": ("VIAS.10010002", "The video source is offline or the stream cannot be pulled."),
    "FAILED": ("VIAS.10030001", "The algorithm process exited unexpectedly."),
    "CREATE_FAILED": ("VIAS.10040001", "Failed to create the job: invalid job configuration."),
    "START_FAILED": ("VIAS.10030004", "The algorithm instance failed to start."),
    "LACK_OF_RESOURCES": ("VIAS.10020001", "Insufficient resources to schedule the job."),
}
GENERIC_ERROR_MESSAGE = "The job failed."

# Initial state mix (weights); "healthy" leaves the unhealthy states out.
STATE_WEIGHTS: dict[str, int] = {
    "RUNNING": 800,
    "STOPPED": 80,
    "PENDING": 30,
    "SUCCEEDED": 40,
    "STARTING": 10,
    "ABNORMAL": 15,
    "FAILED": 10,
    "CREATE_FAILED": 5,
    "START_FAILED": 5,
    "LACK_OF_RESOURCES": 5,
}
CLOUD_SHARE = 0.7
DEPLOYMENTS: tuple[Deployment, Deployment] = ("cloud", "edge")
BATCH_MEMBER_SHARE = 0.2
HISTORY_MS = 90 * 24 * 3600 * 1000  # generated jobs were created over the last 90 days
TICK_MS = 15_000
DEFAULT_START_MS = 1_717_200_000_000  # 2024-06-01: fixed, so a seed always means one world


def service_id_for(algorithm: str) -> str:
    """The id of the simulated algorithm service named after `algorithm`."""
    return f"svc-{algorithm}"


@dataclass(slots=True)
class SimTask:
    id: str
    name: str
    state: str
    vendor: str
    algorithm: str
    deployment: Deployment
    error_code: str | None
    error_message: str | None
    batch_id: str | None
    created_at_ms: int
    updated_at_ms: int
    video_group: str
    # Listed by /v2/tasks in the SDK's shape: `service_id` but no `company` and no `title`.
    sdk_shape: bool = False
    # None: the defaults `camera` and `service` derive
    video_source_name: str | None = None
    service_id: str | None = None

    @property
    def camera(self) -> str:
        """The video source the job analyses."""
        return self.video_source_name or f"camera-{self.id[:6]}"

    @property
    def service(self) -> str:
        """The algorithm service the job runs on."""
        return self.service_id or service_id_for(self.algorithm)


@dataclass(slots=True)
class SimBatchTask:
    id: str
    name: str
    vendor: str
    algorithm: str
    deployment: Deployment
    video_group: str
    created_at_ms: int
    priority: str
    task_ids: list[str]
    tasks: Mapping[str, SimTask] = field(repr=False, compare=False)  # the project's jobs

    def status_counts(self) -> dict[str, int]:
        """Member jobs per lower-case state; states without members are left out."""
        return dict(Counter(self.tasks[task_id].state.lower() for task_id in self.task_ids))


@dataclass(slots=True)
class SimFaceEdgeTask:
    id: str
    name: str
    state: str
    created_at: str  # ISO 8601, as this endpoint sends it
    updated_at: str
    edge_pool_id: str
    camera_id: str


def iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def error_message_for(error_code: str | None, error_message: str | None) -> str | None:
    if error_code is None or error_message is not None:
        return error_message
    return next((m for code, m in ERRORS.values() if code == error_code), GENERIC_ERROR_MESSAGE)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Millions of new objects would otherwise trigger full collections again and again."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
