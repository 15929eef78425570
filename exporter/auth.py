"""The three ways Huawei Cloud authenticates an API call: a static token, an IAM password
login (token cached and refreshed), and AK/SK request signing."""

from __future__ import annotations

import asyncio
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import aiohttp
import structlog
from pydantic import SecretStr

from exporter.errors import (
    ViasAuthCoolDown,
    ViasConnectionError,
    ViasError,
    ViasHTTPError,
    ViasTimeoutError,
    http_error,
)
from exporter.exchange import exchange
from exporter.models import parse_time
from exporter.own_metrics import ProjectMetric
from exporter.settings import GlobalConfig
from exporter.signing import sign_request
from exporter.telemetry import Telemetry

log = structlog.get_logger(__name__)

IAM_TOKENS_ENDPOINT = "/v3/auth/tokens"


class CoolDown:
    """After a refused authentication, no new attempt before a pause that doubles with each
    failure in a row (30 s up to 10 min by default): Huawei locks an account or access key
    after 5 failed authentications in a row, and retrying at once cannot succeed anyway."""

    def __init__(
        self,
        minimum_seconds: float,
        maximum_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._minimum = minimum_seconds
        self._maximum = maximum_seconds
        self._clock = clock
        self._failures = 0
        self._refused_at = 0.0
        self._until = 0.0
        self._error: ViasError | None = None

    @classmethod
    def from_settings(
        cls, settings: GlobalConfig, clock: Callable[[], float] = time.monotonic
    ) -> CoolDown:
        return cls(settings.auth_backoff_seconds, settings.auth_backoff_max_seconds, clock)

    def check(self) -> None:
        """While the pause lasts, raise `ViasAuthCoolDown`: nothing is sent."""
        now = self._clock()
        if self._error is not None and now < self._until:
            what = f"login failed ({self._error.reason})"
            if isinstance(self._error, ViasHTTPError) and self._error.status == 403:
                what = "permission refused"
            elif self._error.reason == "auth":
                what = "credentials refused"
            code = f" ({self._error.error_code})" if self._error.error_code else ""
            raise ViasAuthCoolDown(
                f"skipped: {what}{code} {now - self._refused_at:.0f} s ago, "
                f"next try in {self._until - now:.0f} s",
                endpoint=self._error.endpoint,
                error_code=self._error.error_code,
            )

    def failed(self, error: ViasError) -> float:
        """Start (or lengthen) the pause; returns its length in seconds."""
        self._failures += 1
        pause = min(self._maximum, self._minimum * 2.0 ** (self._failures - 1))
        self._refused_at = self._clock()
        self._until, self._error = self._refused_at + pause, error
        return pause

    def succeeded(self) -> None:
        self._failures, self._error = 0, None


class Auth(ABC):
    """Adds credentials to one request."""

    @abstractmethod
    async def headers(self, method: str, url: str, body: bytes) -> dict[str, str]:
        """Headers to send with this request (computed per request: signatures cover it)."""

    def invalidate(self, sent: Mapping[str, str]) -> bool:
        """The server rejected credentials `sent`; True if fresh ones are worth one retry."""
        return False


class TokenAuth(Auth):
    def __init__(self, token: SecretStr) -> None:
        self._token = token

    async def headers(self, method: str, url: str, body: bytes) -> dict[str, str]:
        return {"X-Auth-Token": self._token.get_secret_value()}


class AkSkAuth(Auth):
    def __init__(
        self,
        access_key: str,
        secret_key: SecretStr,
        project_id: str | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        domain_id: str | None = None,
    ) -> None:
        """A project's calls carry X-Project-Id; an account's (IAM, `project_id` None)
        none, or X-Domain-Id when the account's id is known."""
        self._access_key = access_key
        self._secret_key = secret_key
        self._scope = {"X-Project-Id": project_id} if project_id is not None else {}
        if domain_id:
            self._scope["X-Domain-Id"] = domain_id
        self._clock = clock

    async def headers(self, method: str, url: str, body: bytes) -> dict[str, str]:
        signed = sign_request(
            method,
            url,
            self._scope,
            body,
            self._access_key,
            self._secret_key.get_secret_value(),
            self._clock(),
        )
        return {**self._scope, **signed}


class IamPasswordAuth(Auth):
    """Logs in to IAM with a password, caches the project-scoped token and refreshes it
    ahead of expiry. Concurrent requests share one login; a failed login is not retried
    before a growing cool-down, because Huawei locks accounts that fail repeatedly."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        iam_endpoint: str,
        username: str,
        password: SecretStr,
        domain_name: str,
        project_id: str,
        telemetry: Telemetry,
        timeout_seconds: float = 10.0,
        proxy: str | None = None,
        cool_down: CoolDown,
        refresh_ahead_seconds: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = session
        self._url = iam_endpoint.rstrip("/") + IAM_TOKENS_ENDPOINT
        self._username = username
        self._password = password
        self._domain_name = domain_name
        self._project_id = project_id
        self._telemetry = telemetry
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._proxy = proxy  # the same proxy as the VIAS calls: IAM is outside too
        self._refresh_ahead = refresh_ahead_seconds
        self._cool_down = cool_down
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._dropped: str | None = None  # the token last refused by VIAS
        self._refresh_at = 0.0
        self.logins = 0

    async def headers(self, method: str, url: str, body: bytes) -> dict[str, str]:
        return {"X-Auth-Token": await self._current_token()}

    def invalidate(self, sent: Mapping[str, str]) -> bool:
        token = sent.get("X-Auth-Token")
        if token is None:
            return False
        if token == self._token:
            self._token, self._dropped = None, token
            return True
        # Requests in flight with the same token get their 401 after the first one dropped
        # it: they retry once too, sharing the one login (or its cool-down).
        return token == self._dropped

    def _fresh(self) -> bool:
        return self._token is not None and self._clock() < self._refresh_at

    async def _current_token(self) -> str:
        if self._fresh():
            assert self._token is not None
            return self._token
        async with self._lock:  # one login in flight; waiters reuse its token
            if not self._fresh():
                await self._login()
            assert self._token is not None
            return self._token

    async def _login(self) -> None:
        self._cool_down.check()
        now = self._clock()
        try:
            token, expires_at = await self._request_token()
        except (ViasHTTPError, ViasConnectionError, ViasTimeoutError) as error:
            pause = self._cool_down.failed(error)
            log.warning(
                "iam login failed",
                project_id=self._project_id,
                error=str(error),
                retry_in_seconds=pause,
            )
            raise
        # Refresh ahead of expiry, but never sooner than half-way through a short-lived token.
        lifetime = max(0.0, expires_at - now)
        self._token, self._refresh_at = token, expires_at - min(self._refresh_ahead, lifetime / 2)
        self._cool_down.succeeded()
        self.logins += 1
        expiry = ProjectMetric.vias_auth_token_expiry_timestamp_seconds
        self._telemetry.record(self._project_id, expiry, value=expires_at)
        log.info("iam login succeeded", project_id=self._project_id, expires_at=expires_at)

    def _login_body(self) -> bytes:
        user = {
            "name": self._username,
            "password": self._password.get_secret_value(),
            "domain": {"name": self._domain_name},
        }
        body = {
            "auth": {
                "identity": {"methods": ["password"], "password": {"user": user}},
                "scope": {"project": {"id": self._project_id}},
            }
        }
        return json.dumps(body).encode()

    async def _request_token(self) -> tuple[str, float]:
        answer = await exchange(
            self._session,
            "POST",
            self._url,
            endpoint=IAM_TOKENS_ENDPOINT,
            project_id=self._project_id,
            telemetry=self._telemetry,
            client_timeout=self._timeout,
            data=self._login_body(),
            headers={"Content-Type": "application/json;charset=utf8"},
            proxy=self._proxy,
        )
        token = answer.headers.get("X-Subject-Token", "")
        if answer.status != 201 or not token:
            raise http_error(
                answer.status if answer.status != 201 else 401,  # 201 without a token: refused
                IAM_TOKENS_ENDPOINT,
                answer.body,
                request_id=answer.headers.get("X-Request-Id", ""),
            )
        return token, _expiry(answer.body, self._clock())


def _expiry(payload: bytes, now: float) -> float:
    """`token.expires_at` as Unix time; 24 h (IAM's validity) if the body lacks it."""
    try:
        expires = parse_time(json.loads(payload)["token"]["expires_at"])
    except (
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        OverflowError,
        OSError,
        RecursionError,
    ):
        expires = None  # not JSON, no such field, or a time no clock can hold
    return expires.timestamp() if expires else now + 24 * 3600
