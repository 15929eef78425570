"""Wires configuration into running parts: one HTTP session, auth and transport per target,
one poller per (target, list), one snapshot store and its exposition."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ssl
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import aiohttp

from exporter import __version__
from exporter.auth import AkSkAuth, Auth, CoolDown, IamPasswordAuth, TokenAuth
from exporter.collector import Exposition
from exporter.lists import REGISTRY
from exporter.poller import SourcePoller
from exporter.settings import Config, GlobalConfig, TargetConfig
from exporter.sharding import Sharding
from exporter.snapshot import SnapshotStore
from exporter.telemetry import Telemetry
from exporter.transport import Transport

USER_AGENT = f"vias-exporter/{__version__}"


def freeze_startup_heap() -> None:
    """Move everything start-up made (modules, models, config) out of the garbage
    collector's sight, so that full collections during a big poll walk only poll data:
    shorter event-loop stalls, and so shorter scrape latency."""
    gc.collect()
    gc.freeze()


def _ssl_context(settings: GlobalConfig) -> ssl.SSLContext | bool:
    if not settings.verify_tls:
        return False
    if settings.ca_file is not None:
        return ssl.create_default_context(cafile=str(settings.ca_file))
    return True


def build_auth(
    target: TargetConfig,
    session: aiohttp.ClientSession,
    telemetry: Telemetry,
    settings: GlobalConfig,
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
        cool_down=CoolDown.from_settings(settings, clock=time.time),
    )


class Exporter:
    """The running exporter, used as `async with Exporter(config) as exporter:`."""

    def __init__(
        self,
        config: Config,
        clock: Callable[[], float] = time.time,
        sharding: Sharding | None = None,
    ) -> None:
        self.config = config
        self.sharding = sharding or Sharding()
        self._clock = clock
        self.telemetry = Telemetry()
        self.telemetry.shard_ordinal.set(self.sharding.shard)
        self.telemetry.total_shards.set(self.sharding.total)
        self.store = SnapshotStore(config.global_.problem_tasks_limit)
        self.exposition = Exposition(self.store, self.telemetry)
        self.pollers: list[SourcePoller[Any, Any]] = []
        self._sessions: list[aiohttp.ClientSession] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Exporter:
        settings = self.config.global_
        tls = _ssl_context(settings)  # one for all targets: a CA bundle is read once
        for target in self.config.targets:
            if not self.sharding.owns(target.project_id):
                continue  # another replica's project
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=settings.max_concurrency + 2, ssl=tls),
                headers={"User-Agent": USER_AGENT},
            )
            self._sessions.append(session)
            transport = Transport(
                session=session,
                base_url=target.api_url,
                project_id=target.project_id,
                auth=build_auth(target, session, self.telemetry, settings),
                telemetry=self.telemetry,
                settings=settings,
            )
            for source in target.sources:
                poller = SourcePoller(
                    vias_list=REGISTRY[source],
                    transport=transport,
                    interval_seconds=target.interval_of(source),
                    store=self.store,
                    telemetry=self.telemetry,
                    on_update=self.exposition.refresh,
                    clock=self._clock,
                )
                self.store.replace(poller.state)  # listed (not polled yet) from the start
                self.pollers.append(poller)
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
        """Start every poller's loop in the background."""
        self._tasks = [
            asyncio.create_task(poller.run(), name=f"poll:{poller.project_id}:{poller.source}")
            for poller in self.pollers
        ]

    async def poll_all_once(self) -> None:
        await asyncio.gather(*(poller.poll_once() for poller in self.pollers))

    @property
    def ready(self) -> bool:
        """True once /metrics shows every source's first poll, successful or not."""
        return self.exposition.ready

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for session in self._sessions:
            await session.close()
        self._sessions = []
