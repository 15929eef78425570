"""A VIAS double speaking real HTTP on loopback: seeded jobs, scenario steps, IAM login,
AK/SK and token auth, and injectable faults. Used by tests, benchmarks and `--demo`."""

from exporter.simulator.faults import FAULT_KINDS, Fault, FaultKind, FaultSet
from exporter.simulator.serve import run_simulator
from exporter.simulator.server import RequestRecord, Simulator
from exporter.simulator.world import (
    ProjectData,
    Scenario,
    SimBatchTask,
    SimFaceEdgeTask,
    SimTask,
    World,
)

__all__ = [
    "FAULT_KINDS",
    "Fault",
    "FaultKind",
    "FaultSet",
    "ProjectData",
    "RequestRecord",
    "Scenario",
    "SimBatchTask",
    "SimFaceEdgeTask",
    "SimTask",
    "Simulator",
    "World",
    "run_simulator",
]
