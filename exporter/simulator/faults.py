"""Injected misbehaviour: what a flaky gateway, network or backend does to an answer."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

FaultKind = Literal[
    "latency",  # wait `seconds`, then answer normally
    "server_error_html",  # `status` (502) with an HTML gateway page
    "server_error_json",  # 500 with a VIAS.00010006 JSON body
    "throttle",  # 429 APIGW.0308, `Retry-After: retry_after` when set
    "cut_json",  # 200 with the JSON body truncated halfway
    "wrong_shape",  # 200 with valid JSON of the wrong shape (`body`, or a default)
    "repeat_page",  # every page request answers with page 1
    "unauthorized",  # 401 APIGW.0301
    "slow_body",  # headers and half the body, then a `seconds` stall before the rest
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)


@dataclass(slots=True)
class Fault:
    """Applies to requests whose path contains `match` ("" matches every API path), for
    the next `times` of them, or until removed when `times` is None."""

    kind: FaultKind
    match: str = ""
    times: int | None = None
    seconds: float = 1.0
    status: int = 502
    retry_after: float | None = None
    body: Any = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {FAULT_KINDS}")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class FaultSet:
    """Active faults, oldest first."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, *faults: Fault) -> None:
        self._faults.extend(faults)

    def clear(self) -> None:
        self._faults.clear()

    def active(self) -> list[Fault]:
        return list(self._faults)

    def take(self, path: str) -> tuple[float, Fault | None]:
        """For one request: the summed delay of matching `latency` faults, and the first
        other matching fault. Each fault used counts one of its `times`."""
        delay, chosen = 0.0, None
        for fault in list(self._faults):
            if fault.match not in path or (fault.kind != "latency" and chosen is not None):
                continue
            if fault.kind == "latency":
                delay += fault.seconds
            else:
                chosen = fault
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
        return delay, chosen
