"""VIAS API client: complete listings of every job endpoint, with retries, a request-rate
limit, a bound on concurrent requests and typed errors."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import structlog
from aiolimiter import AsyncLimiter
from pydantic import BaseModel
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)
from yarl import URL

from exporter.auth import Auth, CoolDown
from exporter.errors import (
    ViasConnectionError,
    ViasError,
    ViasHTTPError,
    ViasResponseError,
    ViasTimeoutError,
    http_error,
)
from exporter.models import BatchTaskPage, FaceEdgeTaskPage, Page, Task, TaskPage, parse_model
from exporter.telemetry import Telemetry
from exporter.transport import exchange

log = structlog.get_logger(__name__)

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """How one list endpoint pages and what its `count` means."""

    name: str
    endpoint: str  # path template, also the `endpoint` label of the request metrics
    page_param: str
    size_param: str
    page_size: int  # the largest the endpoint allows: fewest calls
    page_model: type[Page]
    count_is_total: bool  # False where `count` is "items on this page"
    extra_params: Mapping[str, str] = field(default_factory=dict)


SOURCES: dict[str, SourceSpec] = {
    spec.name: spec
    for spec in (
        SourceSpec("tasks", "/v2/{project_id}/tasks", "page", "page_size", 1000, TaskPage, False),
        SourceSpec(
            "batch_tasks",
            "/v2/{project_id}/batch-tasks",
            "page_num",
            "page_size",
            200,
            BatchTaskPage,
            True,
            {"is_paged": "true"},
        ),
        SourceSpec(
            "infer_tasks", "/v1/{project_id}/infer/tasks", "page", "page_size", 50, TaskPage, False
        ),
        # Paging of this older endpoint is undocumented: we send page/page_size and also cope
        # with a server that ignores them and returns everything at once.
        SourceSpec(
            "face_edge_tasks",
            "/v2/{project_id}/services/c-face-edge/tasks",
            "page",
            "page_size",
            100,
            FaceEdgeTaskPage,
            True,
        ),
    )
}
TASK_DETAIL_ENDPOINT = "/v1/{project_id}/infer/tasks/{task_id}"


@dataclass(frozen=True, slots=True)
class ClientOptions:
    timeout_seconds: float = 15.0
    max_retries: int = 3
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    rate_limit_per_second: float = 20.0
    max_concurrency: int = 4
    page_window: int = 4  # pages fetched at once where `count` gives no total
    max_pages: int = 10_000
    proxy: str | None = None
    auth_backoff_seconds: float = 30.0  # first pause after 401/403, doubling up to 10 min


def _retryable(error: BaseException) -> bool:
    if isinstance(error, ViasHTTPError):
        return error.retryable  # never 401/403: Huawei locks keys that fail repeatedly
    if isinstance(error, ViasResponseError | ViasConnectionError):
        return error.transient
    return isinstance(error, ViasTimeoutError)


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class ViasClient:
    """One project's view of the VIAS API."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        base_url: str,
        project_id: str,
        auth: Auth,
        telemetry: Telemetry,
        options: ClientOptions | None = None,
    ) -> None:
        self.project_id = project_id
        self.options = options or ClientOptions()
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._auth = auth
        self._telemetry = telemetry
        self._timeout = aiohttp.ClientTimeout(total=self.options.timeout_seconds)
        self._limiter = AsyncLimiter(self.options.rate_limit_per_second, 1.0)
        self._concurrency = asyncio.Semaphore(self.options.max_concurrency)
        self._auth_cool_down = CoolDown(self.options.auth_backoff_seconds)
        self._exponential = wait_exponential_jitter(
            multiplier=self.options.backoff_initial_seconds,
            max=self.options.backoff_max_seconds,
            jitter=self.options.backoff_initial_seconds,
        )

    # -- listings -------------------------------------------------------------------------

    async def iter_pages(self, source: str, *, dedupe: bool = True) -> AsyncIterator[list[Any]]:
        """Yield the new (not yet seen) items of each page of a complete listing.

        Pages until a short or empty page, never trusting `count` as a total where it is
        "items on this page"; stops on a repeated page and at `max_pages`; de-duplicates
        by `id` because offset paging shifts while jobs change. With `dedupe=False` the
        caller de-duplicates (the poller does, against the job index it keeps anyway).
        """
        spec = SOURCES[source]
        seen: set[str] = set()
        listed = 0
        previous_ids: list[str | None] | None = None
        next_page, window, total = 1, 1, None
        while next_page <= self.options.max_pages:
            numbers = range(next_page, min(next_page + window, self.options.max_pages + 1))
            bodies = await self._fetch_pages(spec, numbers)
            for number in numbers:
                page = await self._parse_page(spec, number, bodies.popleft())
                items = page.items
                ids = [item.id for item in items]
                if items and ids == previous_ids:
                    self._stopped(spec, "repeated_page")
                    return
                previous_ids = ids
                fresh = _unseen(items, seen) if dedupe else items
                listed += len(fresh)
                if fresh:
                    yield fresh
                # A page longer than asked for means the server ignores paging.
                if len(items) != spec.page_size:
                    return
                if spec.count_is_total and page.count is not None:
                    total = page.count
                    if listed >= total:
                        return
            next_page += len(numbers)
            window = self.options.page_window
            if total is not None:  # fetch no further than the total says
                window = max(1, min(window, math.ceil((total - listed) / spec.page_size)))
        self._stopped(spec, "page_cap")

    async def list_all(self, source: str) -> list[Any]:
        """Every item of a source (convenience; the poller streams pages instead)."""
        return [item async for page in self.iter_pages(source) for item in page]

    async def get_task(self, task_id: str) -> Task:
        endpoint = TASK_DETAIL_ENDPOINT
        path = endpoint.format(project_id=quote(self.project_id), task_id=quote(task_id, safe=""))
        return await self._get(endpoint, path, {}, Task)

    def _stopped(self, spec: SourceSpec, reason: str) -> None:
        self._telemetry.pagination_stops.labels(self.project_id, spec.name, reason).inc()
        log.warning("listing cut short", source=spec.name, reason=reason)

    def _page_request(self, spec: SourceSpec, number: int) -> tuple[str, dict[str, str]]:
        path = spec.endpoint.format(project_id=quote(self.project_id))
        params = {
            **spec.extra_params,
            spec.page_param: str(number),
            spec.size_param: str(spec.page_size),
        }
        return path, params

    async def _fetch_pages(self, spec: SourceSpec, numbers: Iterable[int]) -> deque[bytes]:
        """A window of pages fetched concurrently, kept as bytes: parsed one at a time,
        they cost a page of models instead of a window of them."""
        bodies = [self._get_body(spec.endpoint, *self._page_request(spec, n)) for n in numbers]
        return deque(await _gather_or_cancel(bodies))

    async def _parse_page(self, spec: SourceSpec, number: int, body: bytes) -> Page:
        try:
            return parse_model(spec.page_model, body, spec.endpoint)
        except ViasResponseError as error:
            if not error.transient or self.options.max_retries == 0:
                raise
        # A cut body may be a dropped connection: fetch the page again, with the attempts left.
        path, params = self._page_request(spec, number)
        return await self._get(
            spec.endpoint, path, params, spec.page_model, attempts=self.options.max_retries
        )

    # -- one request ----------------------------------------------------------------------

    async def _get(
        self,
        endpoint: str,
        path: str,
        params: Mapping[str, str],
        model: type[M],
        attempts: int | None = None,
    ) -> M:
        """GET and parse, retrying transient failures of either."""
        url = URL(self._base_url + path).with_query(params)

        async def get_and_parse() -> M:
            body = await self._send_authenticated("GET", endpoint, url)
            return parse_model(model, body, endpoint)

        return await self._retrying(get_and_parse, attempts)

    async def _get_body(self, endpoint: str, path: str, params: Mapping[str, str]) -> bytes:
        url = URL(self._base_url + path).with_query(params)
        return await self._retrying(lambda: self._send_authenticated("GET", endpoint, url))

    async def _retrying(self, call: Callable[[], Awaitable[T]], attempts: int | None = None) -> T:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(attempts or self.options.max_retries + 1),
            wait=self._backoff,
            retry=retry_if_exception(_retryable),
            reraise=True,
            before_sleep=_log_retry,
        )
        async for attempt in retrying:
            with attempt:
                return await call()
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def _backoff(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return float(min(retry_after, self.options.backoff_max_seconds))
        return float(self._exponential(state))

    async def _send_authenticated(self, method: str, endpoint: str, url: URL) -> bytes:
        self._auth_cool_down.check()
        headers = await self._auth.headers(method, str(url), b"")
        try:
            try:
                body = await self._send(method, endpoint, url, headers)
            except ViasHTTPError as error:
                # An IAM token may be revoked before its expiry: log in again, once.
                if error.status != 401 or not self._auth.invalidate(headers):
                    raise
                headers = await self._auth.headers(method, str(url), b"")
                body = await self._send(method, endpoint, url, headers)
        except ViasHTTPError as error:
            if error.status in (401, 403):
                pause = self._auth_cool_down.failed(error)
                log.warning("credentials refused", endpoint=endpoint, retry_in_seconds=pause)
            raise
        self._auth_cool_down.succeeded()
        return body

    async def _send(
        self, method: str, endpoint: str, url: URL, headers: Mapping[str, str]
    ) -> bytes:
        async with self._concurrency:
            await self._limiter.acquire()
            answer = await exchange(
                self._session,
                method,
                url,
                endpoint=endpoint,
                project_id=self.project_id,
                telemetry=self._telemetry,
                client_timeout=self._timeout,
                headers=dict(headers),
                proxy=self.options.proxy,
            )
        if answer.status >= 300:
            raise http_error(
                answer.status,
                endpoint,
                answer.body,
                _retry_after(answer.headers.get("Retry-After")),
                answer.headers.get("X-Request-Id", ""),
            )
        return answer.body


def _unseen(items: list[Any], seen: set[str]) -> list[Any]:
    """The items whose id is not in `seen` (adding them), and every item without an id."""
    fresh = []
    for item in items:
        if item.id is None or item.id not in seen:
            fresh.append(item)
            if item.id is not None:
                seen.add(item.id)
    return fresh


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.info(
        "retrying request",
        attempt=state.attempt_number,
        error=str(error),
        wait_seconds=round(state.upcoming_sleep, 3),
    )


async def _gather_or_cancel(awaitables: Sequence[Awaitable[T]]) -> list[T]:
    """Run concurrently; on the first failure cancel the rest and raise that failure."""
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


__all__ = ["SOURCES", "ClientOptions", "SourceSpec", "ViasClient", "ViasError"]
