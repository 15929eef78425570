"""`python -m exporter.simulator`: the VIAS double as a process (end-to-end tests, demos)."""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import get_args

import structlog

from exporter.simulator.serve import run_simulator
from exporter.simulator.server import Simulator
from exporter.simulator.world import Scenario, World

log = structlog.get_logger("exporter.simulator")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    asyncio.run(_serve(args))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m exporter.simulator",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--listen", default="127.0.0.1:9801", type=_address, help="host:port")
    parser.add_argument("--seed", type=int, default=1, help="the same seed, the same world")
    parser.add_argument("--projects", default="p1", help="comma separated project ids")
    parser.add_argument("--tasks", type=int, default=1000, help="jobs per project")
    parser.add_argument("--batch-tasks", type=int, default=5, help="batch tasks per project")
    parser.add_argument("--face-edge-tasks", type=int, default=10, help="per project")
    parser.add_argument(
        "--scenario",
        choices=get_args(Scenario),
        default="demo",
        help="how jobs change at each step",
    )
    parser.add_argument(
        "--step-interval", type=float, default=15.0, help="seconds between steps; 0: never"
    )
    parser.add_argument("--token", default="sim-token", help="static X-Auth-Token accepted")
    parser.add_argument(
        "--iam-user",
        action="append",
        default=[],
        type=_triple,
        metavar="DOMAIN:USER:PASSWORD",
        help="an IAM password login to accept (repeatable)",
    )
    parser.add_argument(
        "--access-key",
        action="append",
        default=[],
        type=_pair,
        metavar="AK:SK",
        help="an AK/SK pair to accept (repeatable)",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per request")
    parser.add_argument("--no-face-edge-paging", action="store_true")
    parser.add_argument(
        "--throttle-per-second",
        type=float,
        default=None,
        help="the gateway answers 429 to API requests beyond this many in any second",
    )
    return parser


async def _serve(args: argparse.Namespace) -> None:
    world = World.generate(
        seed=args.seed,
        project_ids=[p for p in args.projects.split(",") if p],
        tasks_per_project=args.tasks,
        batch_tasks_per_project=args.batch_tasks,
        face_edge_tasks_per_project=args.face_edge_tasks,
        scenario=args.scenario,
    )
    sim = Simulator(
        world,
        token=args.token or None,
        iam_users={(domain, user): password for domain, user, password in args.iam_user},
        access_keys=dict(args.access_key),
        face_edge_paging=not args.no_face_edge_paging,
        latency_seconds=args.latency,
    )
    sim.gateway.per_second = args.throttle_per_second
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    host, port = args.listen
    async with run_simulator(sim, host, port, step_interval=args.step_interval) as url:
        # The token is the double's own, not a secret: clients need it to connect.
        log.info("vias simulator started", url=url, projects=list(world.projects), token=sim.token)
        await stop.wait()


def _address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected host:port, got {value!r}")
    return host, int(port)


def _pair(value: str) -> tuple[str, str]:
    first, sep, second = value.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected A:B, got {value!r}")
    return first, second


def _triple(value: str) -> tuple[str, str, str]:
    domain, user = _pair(value)
    user, password = _pair(user)
    return domain, user, password


if __name__ == "__main__":
    raise SystemExit(main())
