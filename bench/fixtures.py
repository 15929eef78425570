"""What the cases measure with: a snapshot of a given series count, raw VIAS pages, and
helper processes (the simulator, the bench servers) on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from types import MappingProxyType
from typing import IO

from exporter.lists import REGISTRY
from exporter.lists.base import GroupKey, ProblemTask
from exporter.lists.jobs import TASK_STATES, JobData
from exporter.service import Exporter
from exporter.settings import Config
from exporter.snapshot import SourceState

PROJECT_ID = "bench-project"
TOKEN = "bench-token"
HOST = "127.0.0.1"
PROBLEM_TASKS = 200
# series of the exposition that are not vias_tasks: health, problems, own telemetry
_OTHER_SERIES = PROBLEM_TASKS + 60


def exporter_config(url: str = "http://127.0.0.1:9", **global_settings: object) -> Config:
    return Config.model_validate(
        {
            "global": global_settings,
            "targets": [
                {
                    "project_id": PROJECT_ID,
                    "endpoint": url,
                    "auth_token": TOKEN,
                    "sources": ["tasks"],
                }
            ],
        },
        context=REGISTRY,
    )


def snapshot_exporter(series: int) -> Exporter:
    """An exporter (never started) whose snapshot renders to about `series` series."""
    exporter = Exporter(exporter_config())
    groups_wanted = max(1, (series - _OTHER_SERIES) // len(TASK_STATES))
    groups: list[GroupKey] = []
    number = 0
    while len(groups) < groups_wanted:
        groups.append((f"vendor-{number // 20:02d}", f"algorithm-{number % 20:02d}", "cloud"))
        number += 1
    counts = {
        (*group, ""): MappingProxyType(
            {state: (i * 7 + j) % 50 for j, state in enumerate(TASK_STATES)}
        )
        for i, group in enumerate(groups)
    }
    problems = tuple(
        ProblemTask(f"{n:032x}", f"job-{n:06d}", "FAILED", "VIAS.10030001", groups[n % len(groups)])
        for n in range(min(PROBLEM_TASKS, series // 10))
    )
    jobs = sum(sum(c.values()) for c in counts.values())
    data = JobData(MappingProxyType(counts), problems, 0, jobs, MappingProxyType({}), {})
    exporter.store.replace(
        SourceState(
            PROJECT_ID,
            "tasks",
            interval_seconds=60,
            polled=True,
            up=True,
            last_success=time.time(),
            data=data,
            fresh=True,
        )
    )
    exporter.exposition.render()
    return exporter


def count_series(text: bytes) -> int:
    return sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))


def task_pages(jobs: int, page_size: int = 1000) -> list[bytes]:
    """/v2 tasks pages, byte for byte as the simulator serves them."""
    from exporter.simulator import World
    from exporter.simulator.answers import task_v2

    world = World.generate(
        seed=1,
        project_ids=[PROJECT_ID],
        tasks_per_project=jobs,
        batch_tasks_per_project=0,
        face_edge_tasks_per_project=0,
    )
    project = world.projects[PROJECT_ID]
    pages = []
    for start in range(0, jobs, page_size):
        tasks = project.newest_first(start, start + page_size)
        items = ",".join(
            json.dumps(task_v2(task, PROJECT_ID), separators=(",", ":")) for task in tasks
        )
        page = start // page_size + 1
        pages.append(
            f'{{"count":{len(tasks)},"tasks":[{items}],"page":{page},"page_size":{page_size}}}'.encode()
        )
    return pages


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"helper process exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {HOST}:{port}")


@contextlib.contextmanager
def simulator_process(
    jobs: int,
    latency: float = 0.0,
    *,
    projects: Sequence[str] = (PROJECT_ID,),
    batch_tasks: int = 0,
    start_timeout: float = 300.0,
    throttle_per_second: float | None = None,
) -> Iterator[str]:
    """`python -m exporter.simulator` as a process: `jobs` jobs and `batch_tasks` batch
    tasks in each project, no steps (the jobs do not change), answers after `latency`."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "exporter.simulator",
        f"--listen={HOST}:{port}",
        f"--projects={','.join(projects)}",
        f"--tasks={jobs}",
        f"--batch-tasks={batch_tasks}",
        "--face-edge-tasks=0",
        "--step-interval=0",
        f"--token={TOKEN}",
        f"--latency={latency}",
    ]
    if throttle_per_second is not None:
        command.append(f"--throttle-per-second={throttle_per_second}")
    with _process(command) as process:
        wait_for_port(port, process, timeout=start_timeout)
        yield f"http://{HOST}:{port}"


@contextlib.contextmanager
def _process(
    command: Sequence[str], stdin: int | None = None, stdout: int | IO[bytes] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        command,
        stdin=stdin,
        stdout=stdout if stdout is not None else subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Helper:
    """A bench server process (bench.servers) spoken to by lines on stdin/stdout."""

    def __init__(self, *args: str) -> None:
        self._stack = contextlib.ExitStack()
        command = [sys.executable, "-m", "bench.servers", *args]
        self.process = self._stack.enter_context(
            _process(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        )
        hello = self.read()
        self.port = int(str(hello["port"]))
        self.info = hello

    def read(self) -> dict[str, object]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"bench server exited with {self.process.wait()}")
        reply: dict[str, object] = json.loads(line)
        return reply

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        self.process.stdin.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.send("quit")
        self._stack.close()

    def __enter__(self) -> Helper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
