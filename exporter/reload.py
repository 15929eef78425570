"""Reloading the configuration without a restart (SIGHUP, or `POST /-/reload` with
`--web.enable-lifecycle`, as Prometheus does): a good new file replaces the running
configuration; a bad one is reported and the running one stays."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from exporter.own_metrics import ProcessMetric
from exporter.service import Exporter
from exporter.settings import Config, ConfigError

log = structlog.get_logger(__name__)


class Reloader:
    """Loads the configuration again with `load` and hands it to the exporter."""

    def __init__(self, exporter: Exporter, load: Callable[[], Config]) -> None:
        self._exporter = exporter
        self._load = load
        self._lock = asyncio.Lock()  # a second request waits, then loads the file again
        self._signalled: set[asyncio.Task[None]] = set()

    async def reload(self) -> None:
        """Raises `ConfigError` (naming the bad fields, never their values) when the new
        configuration is bad; the running one then stays."""
        telemetry = self._exporter.telemetry
        async with self._lock:
            try:
                config = await asyncio.to_thread(self._load)  # reads files: off the loop
                await self._exporter.reload(config)
            except (ConfigError, OSError) as error:  # OSError: the new CA file is unusable
                telemetry.update(ProcessMetric.vias_config_last_reload_successful, value=0)
                await self._exporter.exposition.refresh()
                log.error("reload failed, the running configuration stays", error=str(error))
                if isinstance(error, ConfigError):
                    raise
                raise ConfigError(f"global.ca_file: cannot load: {error}") from None
        log.info("configuration reloaded", targets=len(self._exporter.targets))

    def on_signal(self) -> None:
        """For SIGHUP: reload in the background; a failure is logged and counted."""
        task = asyncio.create_task(self._reload_quietly(), name="reload")
        self._signalled.add(task)  # keep a reference until it ends
        task.add_done_callback(self._signalled.discard)

    async def _reload_quietly(self) -> None:
        with contextlib.suppress(ConfigError):  # reported by reload()
            await self.reload()
