"""Label values from the API, cut to `label_value_max_bytes`: a Prometheus with
`label_value_length_limit` rejects a whole scrape, every project's data with it, for one
longer value (a 100 kB job name, a 5,000-character state). Cut where every list's label
values are written, so list-specific normalizers and joined values (`quality_problems`)
are cut too; counted in `vias_label_values_truncated_total` and logged.
"""

from __future__ import annotations

import hashlib

import structlog

from exporter.own_metrics import ProjectMetric
from exporter.telemetry import Telemetry

log = structlog.get_logger(__name__)


class LabelCap:
    """Label values longer than `max_bytes` (UTF-8, as Prometheus's
    `label_value_length_limit` counts) cut to it, ending in `…` and 8 hex characters of a
    hash of the whole value, so two long values sharing a beginning stay two series;
    `cut` counts the values cut."""

    __slots__ = ("cut", "max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.cut = 0

    def fits(self, text: str) -> bool:
        """Cheap for the usual value: a character is at most 4 bytes."""
        return len(text) * 4 <= self.max_bytes or len(text.encode()) <= self.max_bytes

    def __call__(self, text: str) -> str:
        if self.fits(text):
            return text
        self.cut += 1
        return capped_label_value(text, self.max_bytes)


def capped_label_value(text: str, max_bytes: int) -> str:
    whole = text.encode("utf-8", "surrogatepass")
    mark = "…" + hashlib.blake2b(whole, digest_size=4).hexdigest()
    room = max_bytes - len(mark.encode())
    return whole[:room].decode("utf-8", "ignore") + mark  # "ignore": a character cut in two


def report_cut(cap: LabelCap, telemetry: Telemetry, project_id: str, source: str) -> None:
    """Count and log what `cap` cut in one render of a source."""
    if not cap.cut:
        return
    values = cap.cut
    telemetry.record(project_id, ProjectMetric.vias_label_values_truncated, source, value=values)
    log.warning(
        "label values truncated",
        project_id=project_id,
        source=source,
        values=values,
        label_value_max_bytes=cap.max_bytes,
    )
