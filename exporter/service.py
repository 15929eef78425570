"""Wires configuration into running parts: one HTTP session, auth and transport per target,
one rate limit and auth cool-down per account, one poller per (target, list), one snapshot
store and its exposition; and keeps them in step with a reloaded configuration and with
discovery."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp
import structlog

from exporter.accounts import Accounts
from exporter.auth import AkSkAuth, Auth, CoolDown, IamPasswordAuth, TokenAuth
from exporter.budget import PlanSummary
from exporter.collector import Exposition
from exporter.discovery import Discovery, without_static
from exporter.lists import REGISTRY
from exporter.metric_filter import MetricFilter
from exporter.own_metrics import ProcessMetric
from exporter.poller import SourcePoller
from exporter.settings import Config, GlobalConfig, TargetConfig
from exporter.sharding import Sharding
from exporter.snapshot import SnapshotStore
from exporter.telemetry import Telemetry
from exporter.transport import Transport, client_session, client_tls

log = structlog.get_logger(__name__)


def freeze_startup_heap() -> None:
    """Move everything start-up made (modules, models, config) out of the garbage
    collector's sight, so that full collections during a big poll walk only poll data:
    shorter event-loop stalls, and so shorter scrape latency."""
    gc.collect()
    gc.freeze()


M_ARENA_MAX = -8  # glibc's mallopt parameter: the most malloc arenas of the process


def limit_malloc_arenas(arenas: int = 2) -> None:
    """At most `arenas` glibc malloc arenas (the default is 8 per CPU): the scrape threads'
    large bodies otherwise leave freed memory spread over arenas of their own, which the
    process keeps (~15-20 MB of peak RSS for 500 projects, docs/performance.md). Nothing
    without glibc's mallopt."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, arenas)


def build_auth(
    target: TargetConfig,
    session: aiohttp.ClientSession,
    telemetry: Telemetry,
    settings: GlobalConfig,
    login_cool_down: CoolDown,
) -> Auth:
    if target.auth_mode == "token":
        assert target.auth_token is not None
        return TokenAuth(target.auth_token)
    if target.auth_mode == "aksk":
        assert target.access_key is not None and target.secret_key is not None
        return AkSkAuth(target.access_key, target.secret_key, target.project_id)
    assert target.username and target.password and target.domain_name
    return IamPasswordAuth(
        session=session,
        iam_endpoint=target.iam_url,
        username=target.username,
        password=target.password,
        domain_name=target.domain_name,
        project_id=target.project_id,
        telemetry=telemetry,
        timeout_seconds=settings.request_timeout_seconds,
        proxy=settings.proxy,  # IAM is outside too
        cool_down=login_cool_down,
    )


TargetKey = tuple[str, str]  # api_url, project_id


def poll_interval(target: TargetConfig, source: str) -> float:
    """How often `target` polls `source`: its `poll_intervals` entry, else its interval
    times the list's factor (edge_pools: 5, the others 1)."""
    if source in target.poll_intervals:
        return target.poll_intervals[source]
    return target.poll_interval_seconds * REGISTRY[source].interval_factor


def target_key(target: TargetConfig) -> TargetKey:
    return (target.api_url, target.project_id)


@dataclass(slots=True)
class _RunningTarget:
    """One target's session and pollers, and their loops once started."""

    config: TargetConfig
    session: aiohttp.ClientSession
    pollers: list[SourcePoller[Any, Any]]
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class Exporter:
    """The running exporter, used as `async with Exporter(config) as exporter:`.

    Its targets are a live set: `reload` (a new configuration) and `set_discovered`
    (projects found by discovery, whose loop runs from `start` to `stop` with a `discovery`
    section: exporter/discovery.py) change it without a restart. A target whose settings are
    unchanged keeps its pollers, data and counters; a changed one is restarted; a removed
    one is stopped and its series leave /metrics."""

    def __init__(
        self,
        config: Config,
        clock: Callable[[], float] = time.time,
        sharding: Sharding | None = None,
        metric_filter: MetricFilter | None = None,
    ) -> None:
        self.config = config
        self.sharding = sharding or Sharding()
        self._clock = clock
        self.telemetry = Telemetry()
        self.telemetry.update(ProcessMetric.vias_exporter_shard_ordinal, value=self.sharding.shard)
        self.telemetry.update(ProcessMetric.vias_exporter_total_shards, value=self.sharding.total)
        self.store = SnapshotStore(config.global_.problem_tasks_limit)
        self.exposition = Exposition(self.store, self.telemetry, metric_filter=metric_filter)
        self.exposition.label_value_max_bytes = config.global_.label_value_max_bytes
        self._accounts = Accounts(config.global_, self.sharding.total)
        self.telemetry.watch_accounts(self._planned)
        self._tls = client_tls(config.global_)  # one for all targets: a CA file is read once
        self._targets: dict[TargetKey, _RunningTarget] = {}
        self._polled_projects: set[str] = set()
        self._discovered: list[TargetConfig] = []
        self._discovery: Discovery | None = None  # with config.discovery (discovery.py)
        self._discovery_task: asyncio.Task[None] | None = None
        self._started = False
        self._ready = False
        self._changing = asyncio.Lock()  # one change of the target set at a time

    @property
    def pollers(self) -> list[SourcePoller[Any, Any]]:
        return [poller for running in self._targets.values() for poller in running.pollers]

    @property
    def targets(self) -> list[TargetConfig]:
        """The targets this replica polls (its shard's share)."""
        return [running.config for running in self._targets.values()]

    async def __aenter__(self) -> Exporter:
        self._new_discovery()
        await self._apply()
        self.telemetry.config_loaded(self._clock())
        self.exposition.render()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def start(self) -> None:
        """Start every poller's loop in the background; targets added later start at once."""
        self._started = True
        for running in self._targets.values():
            self._start(running)
        self._start_discovery()

    async def poll_all_once(self) -> None:
        await asyncio.gather(*(poller.poll_once() for poller in self.pollers))

    def plans(self, *, replan: bool = True) -> list[PlanSummary]:
        """Each account's API budget plan on this replica (exporter/budget.py); without
        `replan`, as the last poll left it (for /metrics: see `AccountPlan.summary`)."""
        return [plan.summary(replan=replan) for plan in self._accounts.plans()]

    def _planned(self) -> list[PlanSummary]:
        return self.plans(replan=False)

    @property
    def ready(self) -> bool:
        """True once /metrics shows every source's first poll, successful or not; and from
        then on, so that targets added by a reload or discovery do not take the replica
        out of its Service while they are polled for the first time."""
        if not self._ready:
            discovery = self._discovery
            self._ready = self.exposition.ready and (
                discovery is None or not self._started or discovery.settled.is_set()
            )
        return self._ready

    async def reload(self, config: Config) -> None:
        """Run with `config` from now on. Changed global settings restart every target
        (they shape each transport); otherwise only the targets that changed."""
        async with self._changing:
            if config.global_ != self.config.global_:
                tls = client_tls(config.global_)  # may raise (a bad CA file): nothing changed
                for key in list(self._targets):
                    await self._drop(key)
                self.store.set_problem_tasks_limit(config.global_.problem_tasks_limit)
                self.exposition.label_value_max_bytes = config.global_.label_value_max_bytes
                self._accounts = Accounts(config.global_, self.sharding.total)
                self._tls = tls
            rediscover = (config.discovery, config.global_) != (
                self.config.discovery,
                self.config.global_,
            )
            self.config = config
            if rediscover:  # the projects found so far stay until the new one has looked
                await self._stop_discovery()
                self._new_discovery()
                if self._discovery is None:
                    self._discovered = []
                    self.telemetry.forget_discovery()
            await self._apply()
            if rediscover and self._started:
                self._start_discovery()
        self.telemetry.config_loaded(self._clock())
        await self.exposition.refresh()

    async def set_discovered(self, targets: Sequence[TargetConfig]) -> None:
        """Poll these discovered projects besides the configured targets."""
        async with self._changing:
            self._discovered = list(targets)
            await self._apply()
        await self.exposition.refresh()

    async def discover(self) -> bool:
        """One discovery refresh, applied (a failed one changes nothing; False): for
        `--once` and tests; a started exporter refreshes on its own."""
        if self._discovery is None:
            return True
        targets = await self._discovery.refresh_or_keep()
        if targets is not None:
            await self.set_discovered(targets)
        return targets is not None

    def _new_discovery(self) -> None:
        discovery = self.config.discovery
        self._discovery = (
            None
            if discovery is None
            else Discovery(discovery, self.config.global_, self.telemetry, clock=self._clock)
        )

    def _start_discovery(self) -> None:
        if self._discovery is not None and self._discovery_task is None:
            self._discovery_task = asyncio.create_task(
                self._discovery.run(self.set_discovered, current=self._discovered),
                name="discovery",
            )

    async def _stop_discovery(self) -> None:
        task, self._discovery_task = self._discovery_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._discovery is not None:
            await self._discovery.close()

    async def _apply(self) -> None:
        """Make the running targets what the configuration and discovery ask for."""
        wanted: dict[TargetKey, TargetConfig] = {}
        discovered = without_static(self._discovered, self.config.targets)
        for target in [*discovered, *self.config.targets]:
            if self.sharding.owns(target.project_id):
                wanted[target_key(target)] = target
        for key, running in list(self._targets.items()):
            if wanted.get(key) != running.config:
                await self._drop(key)
        for key, target in wanted.items():
            if key not in self._targets:
                self._targets[key] = running = self._build(target)
                if self._started:
                    self._start(running)
        self._accounts.keep_only(wanted.values())
        # Self-metric series go with their project, however it went (a restarted target
        # keeps its counters going).
        polled = {target.project_id for target in wanted.values()}
        for project_id in self._polled_projects - polled:
            self.telemetry.forget_project(project_id)
        self._polled_projects = polled
        log.info("targets applied", targets=len(self._targets), accounts=len(self._accounts))
        for plan in self._accounts.plans():
            plan.report("targets applied")  # a line for each account over its budget

    def _build(self, target: TargetConfig) -> _RunningTarget:
        settings = self.config.global_
        account = self._accounts.of(target)
        session = client_session(self._tls, settings.max_concurrency + 2)
        auth = build_auth(target, session, self.telemetry, settings, account.login_cool_down)
        transport = Transport(
            session=session,
            base_url=target.api_url,
            project_id=target.project_id,
            auth=auth,
            telemetry=self.telemetry,
            settings=settings,
            limiter=account.plan.limiter,
            account_cool_down=account.signing_cool_down if target.auth_mode == "aksk" else None,
        )
        pollers: list[SourcePoller[Any, Any]] = []
        for source in target.sources:
            poller = SourcePoller(
                vias_list=REGISTRY[source],
                transport=transport,
                interval_seconds=poll_interval(target, source),
                store=self.store,
                telemetry=self.telemetry,
                on_update=self.exposition.refresh,
                clock=self._clock,
                plan=account.plan,
            )
            self.store.replace(poller.state)  # listed (not polled yet) from the start
            pollers.append(poller)
        return _RunningTarget(target, session, pollers)

    def _start(self, running: _RunningTarget) -> None:
        running.tasks = [
            asyncio.create_task(poller.run(), name=f"poll:{poller.project_id}:{poller.source}")
            for poller in running.pollers
        ]

    async def _drop(self, key: TargetKey) -> None:
        """Stop a target and remove its sources from the snapshot."""
        running = self._targets.pop(key)
        await _stop(running)
        for poller in running.pollers:
            poller.leave_plan()
        project_id = running.config.project_id
        if not any(other.config.project_id == project_id for other in self._targets.values()):
            self.store.remove(project_id)

    async def stop(self) -> None:
        await self._stop_discovery()
        for running in self._targets.values():
            await _stop(running)
        self._started = False


async def _stop(running: _RunningTarget) -> None:
    for task in running.tasks:
        task.cancel()
    for task in running.tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    running.tasks = []
    await running.session.close()
