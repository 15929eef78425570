"""One project's way to VIAS: its session and credentials, the cool-down after refused
credentials and the request-rate limit (both shared by an account's projects), the pause
of one endpoint after a 403 (a permission missing on it), the bound on concurrent
requests, and retries with backoff, with parsing inside the retried call so that one retry
budget covers both.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from functools import partial
from typing import TypeVar
from urllib.parse import quote

import aiohttp
import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)
from yarl import URL

from exporter import __version__
from exporter.auth import Auth, CoolDown
from exporter.errors import ViasError, ViasHTTPError, ViasResponseError, http_error
from exporter.exchange import exchange
from exporter.pacing import AimdBudget, RateLimiter
from exporter.settings import GlobalConfig
from exporter.telemetry import Telemetry

log = structlog.get_logger(__name__)

T = TypeVar("T")


def retry_after_seconds(value: str | None) -> float | None:
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


USER_AGENT = f"vias-exporter/{__version__}"


def client_session(tls: ssl.SSLContext | bool, connections: int) -> aiohttp.ClientSession:
    """An HTTP session to VIAS or IAM: at most `connections` open, TLS as `client_tls`."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, ssl=tls),
        headers={"User-Agent": USER_AGENT},
    )


def client_tls(settings: GlobalConfig) -> ssl.SSLContext | bool:
    """How sessions to VIAS and IAM verify TLS: aiohttp's `ssl` argument."""
    if not settings.verify_tls:
        return False
    if settings.ca_file is not None:
        return ssl.create_default_context(cafile=str(settings.ca_file))
    return True


def _path_segment(value: str, endpoint: str) -> str:
    """A path parameter quoted whole (a `/` or `?` in it stays in its segment); an empty or
    dot segment, which URLs resolve to another path whatever the escaping, is refused."""
    if value in ("", ".", ".."):
        raise ViasResponseError(f"{endpoint}: not a usable id: {value!r}", endpoint=endpoint)
    return quote(value, safe="")


def _retryable(error: BaseException) -> bool:
    return isinstance(error, ViasError) and error.retryable


class Transport:
    """One project's requests to VIAS."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        base_url: str,
        project_id: str,
        auth: Auth,
        telemetry: Telemetry,
        settings: GlobalConfig,
        limiter: RateLimiter | None = None,
        account_cool_down: CoolDown | None = None,
    ) -> None:
        """`limiter` is shared by the targets of one account (see `exporter.accounts`),
        and so is `account_cool_down`, the pause after a 401 to credentials that stand for
        the whole account (an access key); without them this project has its own. A 403
        is a permission missing on one endpoint: that endpoint alone pauses, so an opt-in
        list without its permission never stops the others."""
        self.project_id = project_id
        self.telemetry = telemetry
        self.settings = settings
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._auth = auth
        self._timeout = aiohttp.ClientTimeout(total=settings.request_timeout_seconds)
        self._limiter = limiter or RateLimiter(AimdBudget(settings.rate_limit_per_second))
        self._concurrency = asyncio.Semaphore(settings.max_concurrency)
        self._account_cool_down = account_cool_down or CoolDown.from_settings(settings)
        self._endpoint_cool_downs: dict[str, CoolDown] = {}  # by endpoint template, after a 403
        self._exponential = wait_exponential_jitter(
            multiplier=settings.backoff_initial_seconds,
            max=settings.backoff_max_seconds,
            jitter=settings.backoff_initial_seconds,
        )

    async def get(
        self,
        endpoint: str,
        params: Mapping[str, str],
        parse: Callable[[bytes], T],
        **path_fields: str,
    ) -> T:
        """GET `endpoint` (a path template filled with the project and `path_fields`) and
        parse the body, retrying what may succeed when sent again (timeouts, 5xx, 429 after
        its Retry-After, a cut body) within one budget of `max_retries`."""
        fields = {"project_id": self.project_id, **path_fields}
        path = endpoint.format(
            **{
                name: _path_segment(value, endpoint)
                for name, value in fields.items()
                if f"{{{name}}}" in endpoint  # IAM's paths name no project
            }
        )
        url = URL(self._base_url + path).with_query(params)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.max_retries + 1),
            wait=self._backoff,
            retry=retry_if_exception(_retryable),
            reraise=True,
            before_sleep=partial(_log_retry, self.project_id, endpoint),
        )
        async for attempt in retrying:
            with attempt:
                return parse(await self._send_authenticated("GET", endpoint, url))
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def _backoff(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, ViasHTTPError) and error.retry_after is not None:
            return float(min(error.retry_after, self.settings.backoff_max_seconds))
        return float(self._exponential(state))

    async def _send_authenticated(self, method: str, endpoint: str, url: URL) -> bytes:
        self._account_cool_down.check()
        forbidden = self._endpoint_cool_downs.get(endpoint)
        if forbidden is not None:
            forbidden.check()
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
            if error.status == 401:  # the credentials refused: the account pauses
                pause = self._account_cool_down.failed(error)
                log.warning(
                    "credentials refused",
                    project_id=self.project_id,
                    endpoint=endpoint,
                    retry_in_seconds=pause,
                )
            elif error.status == 403:  # a permission missing on this endpoint alone
                if forbidden is None:
                    forbidden = CoolDown.from_settings(self.settings)
                    self._endpoint_cool_downs[endpoint] = forbidden
                pause = forbidden.failed(error)
                log.warning(
                    "permission refused",
                    project_id=self.project_id,
                    endpoint=endpoint,
                    retry_in_seconds=pause,
                )
            raise
        self._account_cool_down.succeeded()
        if forbidden is not None:
            forbidden.succeeded()
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
                telemetry=self.telemetry,
                client_timeout=self._timeout,
                max_body_bytes=self.settings.max_response_bytes,
                headers=dict(headers),
                proxy=self.settings.proxy,
            )
        self._limiter.observe(answer.status, answer.headers)  # 429s lower the budget
        if answer.status >= 300:
            raise http_error(
                answer.status,
                endpoint,
                answer.body,
                retry_after_seconds(answer.headers.get("Retry-After")),
                answer.headers.get("X-Request-Id", ""),
            )
        return answer.body


def _log_retry(project_id: str, endpoint: str, state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.info(
        "retrying request",
        project_id=project_id,
        endpoint=endpoint,  # the list's path template: which source
        attempt=state.attempt_number,
        error=str(error),
        wait_seconds=round(state.upcoming_sleep, 3),
    )
