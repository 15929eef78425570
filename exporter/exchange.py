"""One HTTP exchange with VIAS or IAM: timed, counted, and failures turned into typed errors.

Shared by the transport and the IAM login so every request is measured the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
from multidict import CIMultiDictProxy

from exporter.errors import ViasCertificateError, ViasConnectionError, ViasTimeoutError
from exporter.telemetry import Telemetry

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


async def exchange(
    session: aiohttp.ClientSession,
    method: str,
    url: Any,
    *,
    endpoint: str,
    project_id: str,
    telemetry: Telemetry,
    client_timeout: aiohttp.ClientTimeout,
    **request: Any,
) -> Answer:
    """Send one request and read the whole answer, whatever its status. `endpoint` is the
    path template: the metrics' label and the errors' subject, never the URL itself."""
    started = time.perf_counter()
    code = "connection_error"
    try:
        async with session.request(method, url, timeout=client_timeout, **request) as response:
            code = str(response.status)
            return Answer(response.status, response.headers, await response.read())
    except TimeoutError as error:
        code = "timeout"
        total = client_timeout.total
        seconds = f" within {total:g}s" if total else ""
        raise ViasTimeoutError(f"no answer from {endpoint}{seconds}", endpoint=endpoint) from error
    except aiohttp.ClientConnectorCertificateError as error:
        raise ViasCertificateError(
            f"{endpoint}: TLS certificate refused: {error.certificate_error}", endpoint=endpoint
        ) from error
    except aiohttp.ClientError as error:
        raise ViasConnectionError(
            f"{endpoint}: {type(error).__name__}: {error}", endpoint=endpoint
        ) from error
    finally:
        duration = time.perf_counter() - started
        telemetry.observe_request(project_id, endpoint, code, duration)
        log.debug(
            "request",
            project_id=project_id,
            method=method,
            endpoint=endpoint,
            query=getattr(url, "query_string", ""),  # paging parameters only, never secrets
            code=code,
            duration_seconds=round(duration, 3),
        )
