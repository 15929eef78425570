"""Shared test helpers: credentials, configs pointing at the simulator, the exporter's real
web server on loopback, and a parsed-exposition view."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from copy import copy
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from exporter.lists import REGISTRY
from exporter.service import Exporter
from exporter.settings import Config, DiscoveryConfig
from exporter.simulator import Fault, Simulator, World, run_simulator
from exporter.simulator.iam import IamProject
from exporter.telemetry import Telemetry
from exporter.web import create_app
from exporter.webconfig import WebConfig
from exporter.webserver import WebLimits, start_site

TOKEN = "sim-token-s3cr3t"
DOMAIN, USER, PASSWORD = "acme", "ops", "pa55-s3cr3t"
ACCESS_KEY, SECRET_KEY = "AKSIMULATOR0001", "sk-s3cr3t-0123456789"
SECRETS = (TOKEN, PASSWORD, SECRET_KEY)

Labels = frozenset[tuple[str, str]]


@dataclass
class RunningSimulator:
    sim: Simulator
    url: str

    @property
    def world(self) -> World:
        return self.sim.world


def make_simulator(world: World, **options: Any) -> Simulator:
    return Simulator(
        world,
        token=TOKEN,
        iam_users={(DOMAIN, USER): PASSWORD},
        access_keys={ACCESS_KEY: SECRET_KEY},
        **options,
    )


def target(url: str, project_id: str = "p1", auth: str = "token", **fields: Any) -> dict[str, Any]:
    """One target's YAML-shaped settings for the simulator at `url`."""
    credentials: dict[str, dict[str, Any]] = {
        "token": {"auth_token": TOKEN},
        "password": {
            "username": USER,
            "password": PASSWORD,
            "domain_name": DOMAIN,
            "iam_endpoint": url,
        },
        "aksk": {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY},
    }
    return {"project_id": project_id, "endpoint": url, **credentials[auth], **fields}


def job_items(start: int, count: int) -> list[dict[str, Any]]:
    """`count` running jobs as a job list answers them, ids from `start`."""
    return [
        {"id": f"job-{i}", "state": "RUNNING", "company": "v", "title": "a", "type": "0"}
        for i in range(start, start + count)
    ]


def make_config(targets: Iterable[dict[str, Any]], **global_settings: Any) -> Config:
    settings = {"request_timeout_seconds": 5, **global_settings}
    return Config.model_validate({"global": settings, "targets": list(targets)}, context=REGISTRY)


@dataclass
class RunningExporter:
    exporter: Exporter
    url: str
    session: aiohttp.ClientSession

    async def get(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        async with self.session.get(self.url + path, **kwargs) as response:
            await response.read()
            return response

    async def metrics(self) -> Samples:
        async with self.session.get(self.url + "/metrics") as response:
            assert response.status == 200
            return Samples.parse(await response.text())


class Samples(dict[tuple[str, Labels], float]):
    """Parsed exposition: (sample name, labels) -> value."""

    @classmethod
    def parse(cls, text: str) -> Samples:
        samples = cls()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return samples

    def value(self, name: str, **labels: str) -> float | None:
        return self.get((name, frozenset(labels.items())))

    def series(self, name: str, **match: str) -> dict[Labels, float]:
        """Every series of `name` whose labels include `match`."""
        wanted = set(match.items())
        return {labels: v for (n, labels), v in self.items() if n == name and wanted <= labels}


@contextlib.asynccontextmanager
async def serving_app(
    app: web.Application, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[str]:
    """An aiohttp app on a free loopback port; yields its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def serving(exporter: Exporter, web_config: WebConfig | None = None) -> AsyncIterator[str]:
    """The exporter's real web app on a free loopback port, as the CLI serves it."""
    tls = web_config.tls_server_config if web_config else None
    app = create_app(exporter, web_config=web_config)
    context = tls.ssl_context() if tls else None
    runner, site = await start_site(app, "127.0.0.1", 0, WebLimits(), context)
    try:
        yield f"{'https' if context else 'http'}://127.0.0.1:{site.port}"
    finally:
        await runner.cleanup()


StartExporter = Callable[[Config], contextlib.AbstractAsyncContextManager[RunningExporter]]


def free_port() -> int:
    """A loopback port nothing listens on (bound, then closed): for a process to listen on,
    or to refuse a connection."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[Any], timeout: float = 10) -> None:
    """Terminate a helper process and reap it, killing it if it ignores SIGTERM."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def exposition_with_every_metric() -> str:
    """The text exposition of a real exporter that polled the simulator over HTTP until
    every metric it can export has samples: discovery (a failed and a good refresh), IAM
    password login (token expiry), a poll
    error, a poll skipped after refused credentials, a repeated page, a state change
    (transitions and their `_created`), problem jobs over the cap, batch tasks, an edge-pool
    page refused with 400 (a paging fallback), and an overrun of a poll loop started as the
    CLI starts it."""
    world = World.generate(
        seed=3,
        project_ids=["p1", "p2", "p3", "p4"],
        tasks_per_project=120,
        batch_tasks_per_project=3,
        face_edge_tasks_per_project=5,
        scenario="demo",
    )
    world.projects["p2"].add_task(state="S" * 2000)  # a label value over the cap
    sim = make_simulator(world)
    sim.resources.edge_pool_max_page_size = 200  # our first page of 1000 is refused
    async with run_simulator(sim) as url:
        config = make_config(
            [
                target(url, "p1", auth="password", sources=["tasks", "infer_tasks"]),
                target(url, "p2", sources=list(REGISTRY)),  # every list, whatever is added
                target(url, "p3", sources=["batch_tasks"], poll_interval_seconds=0.05),
                target(url, "p4", sources=["tasks"], poll_interval_seconds=3600),
            ],
            problem_tasks_limit=1,
            max_retries=0,
        )
        config.discovery = DiscoveryConfig.model_validate(  # its metrics; no projects there
            {"iam_endpoint": url, "access_key": ACCESS_KEY, "secret_key": SECRET_KEY}
            | {"regions": ["eu-west-0"]},
            context=REGISTRY,
        )
        sim.iam.projects["a/b"] = IamProject("a/b", "eu-west-0")  # an id that is a path
        async with Exporter(config) as exporter:
            create_app(exporter)  # the web server's own metrics, as the CLI serves them
            await exporter.poll_all_once()
            sim.faults.add(Fault("server_error_json", match="/v3/projects", times=1))
            assert not await exporter.discover()  # a refresh failure, then a success
            assert await exporter.discover()
            project = world.projects["p1"]
            running = next(t.id for t in project.tasks.values() if t.state == "RUNNING")
            project.set_state(running, "FAILED", error_code="VIAS.10030001")
            sim.faults.add(
                Fault("server_error_json", match="/p2/tasks", times=1),
                Fault("repeat_page", match="/p1/infer/tasks", times=2),
                Fault("unauthorized", match="/p4/", times=1),
            )
            await exporter.poll_all_once()
            p4_tasks = next(p for p in exporter.pollers if p.project_id == "p4")
            await p4_tasks.poll_once()  # refused moments ago: skipped, nothing sent
            sim.faults.add(Fault("latency", match="/p3/", seconds=0.3, times=1))
            exporter.start()  # p3 polls every 50 ms: its slow poll overruns
            deadline = time.monotonic() + 15
            while b"\nvias_poll_overruns_total{" not in exporter.exposition.body(
                openmetrics=False, gzipped=False
            ):
                assert time.monotonic() < deadline, "no poll overran"
                await asyncio.sleep(0.01)
            return exporter.exposition.body(openmetrics=False, gzipped=False).decode()


def discovery_config(
    url: str, *, targets: list[dict[str, Any]] | None = None, **discovery: Any
) -> Config:
    """Discovery through the simulator's IAM at `url` (AK/SK), the `tasks` of every project
    of cn-north-4, no retries; `discovery` overrides or adds fields of the section."""
    return Config.model_validate(
        {
            "global": {"request_timeout_seconds": 5, "max_retries": 0},
            "discovery": {
                "iam_endpoint": url,
                "endpoint": url,
                "access_key": ACCESS_KEY,
                "secret_key": SECRET_KEY,
                "regions": ["cn-north-4"],
                "sources": ["tasks"],
                **discovery,
            },
            "targets": targets or [],
        },
        context=REGISTRY,
    )


class _AllTelemetry(Collector):
    """Every self-metric of a `Telemetry`: each project's families merged, then the
    process-wide ones."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    def collect(self) -> Iterator[Metric]:
        merged = [copy(family) for family in self.telemetry.project_families]
        for family in merged:
            family.samples = []
        for _, metrics in self.telemetry.projects():
            for family, own in zip(merged, metrics.registry.collect(), strict=True):
                family.samples.extend(own.samples)
        yield from merged
        yield from self.telemetry.process_registry.collect()


def telemetry_registry(telemetry: Telemetry) -> CollectorRegistry:
    """A registry of every self-metric (`get_sample_value`, `generate_latest`)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_AllTelemetry(telemetry))
    return registry
