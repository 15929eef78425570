"""Typed errors of the VIAS client. Each carries the `reason` the poll-error metric uses,
whether retrying can help (`retryable`), and the server's `error_code` and `request_id`.

Messages never contain credentials: they are built from the endpoint template, the status
and the server's own error fields, never from request headers.
"""

from __future__ import annotations

import json
import re

EXCERPT_CHARS = 200
_TAGS = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def safe_excerpt(body: bytes | str, limit: int = EXCERPT_CHARS) -> str:
    """A short, single-line, tag-free excerpt of a body that was not the JSON we expected."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = _SPACE.sub(" ", _TAGS.sub(" ", text)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ViasError(Exception):
    """Base of every error the client raises."""

    reason = "error"
    retryable_by_default = False

    def __init__(
        self,
        message: str,
        *,
        endpoint: str = "",
        error_code: str = "",
        request_id: str = "",
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.error_code = error_code
        self.request_id = request_id
        # Whether the same request may succeed if sent again (the one retry policy input).
        self.retryable = self.retryable_by_default if retryable is None else retryable


class ViasConnectionError(ViasError):
    reason = "connection"
    retryable_by_default = True


class ViasCertificateError(ViasConnectionError):
    """The server's TLS certificate was refused: retrying at once cannot change that."""

    retryable_by_default = False


class ViasTimeoutError(ViasError):
    reason = "timeout"
    retryable_by_default = True


class ViasAuthCoolDown(ViasError):
    """Nothing was sent: credentials were refused moments ago, and refusals in a row lock
    them (Huawei: 5). The poll is skipped, not failed; the pause doubles up to a maximum."""

    reason = "auth_cooldown"


class ViasResponseError(ViasError):
    """A 2xx answer we cannot use: not JSON, cut short (retryable: a dropped connection),
    or the wrong shape (not retryable)."""

    reason = "bad_response"


class ViasHTTPError(ViasError):
    """A non-2xx answer, with the fields of the VIAS/API-gateway error body when present."""

    def __init__(
        self,
        *,
        status: int,
        endpoint: str,
        error_code: str = "",
        error_msg: str = "",
        request_id: str = "",
        excerpt: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.error_msg = error_msg
        self.excerpt = excerpt
        self.retry_after = retry_after
        detail = f"{error_code}: {error_msg}" if error_code or error_msg else excerpt
        suffix = f" (request_id={request_id})" if request_id else ""
        super().__init__(
            f"HTTP {status} from {endpoint}: {detail}{suffix}",
            endpoint=endpoint,
            error_code=error_code,
            request_id=request_id,
            # Never 401/403: Huawei locks keys that fail repeatedly.
            retryable=status == 429 or status >= 500,
        )

    @property
    def reason(self) -> str:  # type: ignore[override]
        if self.status in (401, 403):
            return "auth"
        if self.status == 429:
            return "throttled"
        if self.status >= 500:
            return "server_error"
        return "client_error"


def _field(data: dict[str, object], name: str) -> str:
    value = data.get(name)
    return "" if value is None else str(value)[:EXCERPT_CHARS]


def http_error(
    status: int,
    endpoint: str,
    payload: bytes,
    retry_after: float | None = None,
    request_id: str = "",
) -> ViasHTTPError:
    """The typed error for a non-2xx answer, with the body's error fields when it has them.

    VIAS and its API gateway answer `{"error_code", "error_msg", "request_id"}`; IAM nests
    `{"error": {"code", "message"}}`; a gateway may answer HTML. `request_id` (the
    X-Request-Id header) names the request when the body does not.
    """
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
        data = None
    if not isinstance(data, dict):
        return ViasHTTPError(
            status=status,
            endpoint=endpoint,
            excerpt=safe_excerpt(payload),
            request_id=request_id[:EXCERPT_CHARS],
            retry_after=retry_after,
        )
    nested = data.get("error")
    if isinstance(nested, dict):
        data = {"error_code": nested.get("code"), "error_msg": nested.get("message"), **data}
    return ViasHTTPError(
        status=status,
        endpoint=endpoint,
        error_code=_field(data, "error_code"),
        error_msg=_field(data, "error_msg"),
        request_id=_field(data, "request_id") or request_id[:EXCERPT_CHARS],
        retry_after=retry_after,
    )
