"""The registry of VIAS lists: one module per list endpoint, one line here.

Configuration choices (`sources`), the pollers, the collector's families, the demo and the
metrics reference test all come from `REGISTRY`; nothing else names the lists.
"""

from __future__ import annotations

from typing import Any

from exporter.lists.algorithm_services import ALGORITHM_SERVICES
from exporter.lists.base import ViasList
from exporter.lists.batch_tasks import BATCH_TASKS
from exporter.lists.edge_pools import EDGE_POOLS
from exporter.lists.face_edge_tasks import FACE_EDGE_TASKS
from exporter.lists.infer_tasks import INFER_TASKS
from exporter.lists.tasks import TASKS
from exporter.lists.video_groups import VIDEO_GROUPS
from exporter.lists.video_sources import VIDEO_SOURCES

# Order is exposition order: the families of the first list that renders them come first.
REGISTRY: dict[str, ViasList[Any, Any]] = {
    vias_list.name: vias_list
    for vias_list in (
        TASKS,
        BATCH_TASKS,
        INFER_TASKS,
        FACE_EDGE_TASKS,
        ALGORITHM_SERVICES,
        EDGE_POOLS,
        VIDEO_SOURCES,
        VIDEO_GROUPS,
    )
}
DEFAULT_LISTS: tuple[str, ...] = tuple(
    name for name, vias_list in REGISTRY.items() if vias_list.polled_by_default
)
# Every list once: what the demo polls (a list repeating another's items is left out).
DISTINCT_LISTS: tuple[str, ...] = tuple(
    name for name, vias_list in REGISTRY.items() if vias_list.same_items_as is None
)

__all__ = ["DEFAULT_LISTS", "DISTINCT_LISTS", "REGISTRY", "ViasList"]
