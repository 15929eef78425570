"""aioresponses helpers shared by the transport and paginator unit tests: a transport to a
mocked VIAS and routes that record what was asked."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aioresponses import CallbackResult, aioresponses
from pydantic import SecretStr
from yarl import URL

from exporter.auth import Auth, TokenAuth
from exporter.settings import GlobalConfig
from exporter.telemetry import Telemetry
from exporter.transport import Transport

BASE = "http://vias.test"
# Retries without waiting long: the unit tests count attempts, not seconds.
FAST = GlobalConfig(backoff_initial_seconds=0.001, backoff_max_seconds=0.01, max_retries=2)
# An answer now, or later (an async handler may hold a request open).
Handler = Callable[[URL], CallbackResult | Awaitable[CallbackResult]]


def mocked_transport(
    session: aiohttp.ClientSession,
    telemetry: Telemetry,
    settings: GlobalConfig,
    auth: Auth | None = None,
) -> Transport:
    return Transport(
        session=session,
        base_url=BASE,
        project_id="p1",
        auth=auth or TokenAuth(SecretStr("tok")),
        telemetry=telemetry,
        settings=settings,
    )


def serve(mock: aioresponses, path: str, handler: Handler) -> list[URL]:
    """Route every GET of `path` (any query) to handler; return the list of URLs asked."""
    seen: list[URL] = []

    async def callback(url: URL, **_: Any) -> CallbackResult:
        seen.append(url)
        answer = handler(url)
        return await answer if inspect.isawaitable(answer) else answer

    mock.get(re.compile(re.escape(BASE + path) + r"(\?.*)?$"), callback=callback, repeat=True)
    return seen
