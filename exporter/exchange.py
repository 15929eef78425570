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

from exporter.config_rules import DEFAULT_MAX_RESPONSE_BYTES
from exporter.errors import (
    ViasCertificateError,
    ViasConnectionError,
    ViasResponseError,
    ViasTimeoutError,
)
from exporter.own_metrics import ProjectMetric
from exporter.telemetry import Telemetry

log = structlog.get_logger(__name__)

READ_CHUNK_BYTES = 256 << 10


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
    max_body_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    **request: Any,
) -> Answer:
    """Send one request and read the whole answer, whatever its status, up to
    `max_body_bytes` (a longer one is a `bad_response`, not retried: the same request gets
    the same page). `endpoint` is the path template: the metrics' label and the errors'
    subject, never the URL itself."""
    started = time.perf_counter()
    code = "connection_error"
    try:
        async with session.request(method, url, timeout=client_timeout, **request) as response:
            code = str(response.status)
            body = await _read_bounded(response, max_body_bytes, endpoint, project_id)
            return Answer(response.status, response.headers, body)
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
        telemetry.record(project_id, ProjectMetric.vias_api_requests, endpoint, code)
        latency = ProjectMetric.vias_api_request_duration_seconds
        telemetry.record(project_id, latency, endpoint, value=duration)
        log.debug(
            "request",
            project_id=project_id,
            method=method,
            endpoint=endpoint,
            query=getattr(url, "query_string", ""),  # paging parameters only, never secrets
            code=code,
            duration_seconds=round(duration, 3),
        )


async def _read_bounded(
    response: aiohttp.ClientResponse, limit: int, endpoint: str, project_id: str
) -> bytes:
    """The body, read chunk by chunk and given up on past `limit` bytes (decompressed):
    a never-ending or huge answer costs at most `limit` bytes of memory, not the process."""
    declared = response.content_length
    if declared is not None and declared > limit:
        raise _too_large(endpoint, project_id, limit, f"announced {declared} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(READ_CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            raise _too_large(endpoint, project_id, limit, f"more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(endpoint: str, project_id: str, limit: int, what: str) -> ViasResponseError:
    log.warning(
        "answer body too large",
        project_id=project_id,
        endpoint=endpoint,
        body=what,
        max_response_bytes=limit,
    )
    return ViasResponseError(
        f"answer from {endpoint} too large: {what} (max_response_bytes is {limit})",
        endpoint=endpoint,
        retryable=False,
    )
