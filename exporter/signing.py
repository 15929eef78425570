"""Huawei Cloud AK/SK request signing ("SDK-HMAC-SHA256"), both ends of it.

Canonical request = METHOD, URI, QUERY, HEADERS, SIGNED_HEADERS, hex(sha256(body)), one per
line; the signature is hex(hmac_sha256(SK, string to sign)). Byte-identical to Huawei's
`huaweicloudsdkcore.signer.Signer` for JSON or empty bodies; unlike it, the body is always
hashed (it never falls back to "UNSIGNED-PAYLOAD").
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, quote, unquote, urlsplit

ALGORITHM = "SDK-HMAC-SHA256"
DATE_HEADER = "X-Sdk-Date"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
DEFAULT_MAX_SKEW = timedelta(minutes=15)

_AUTHORIZATION = re.compile(
    ALGORITHM + r"\s+Access=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-fA-F]+)\s*"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def sign_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    access_key: str,
    secret_key: str,
    now: datetime,
) -> dict[str, str]:
    """The headers to add to a request (`X-Sdk-Date`, `Authorization`).

    Every header in `headers` is signed, plus `Host` (taken from `url` unless given, as an
    HTTP client would send it) and `X-Sdk-Date`; send `headers` unchanged with the request.
    """
    parts = urlsplit(url)
    date = _utc(now).strftime(DATE_FORMAT)
    to_sign = {name.lower(): value for name, value in headers.items()}
    to_sign.setdefault("host", _host(parts.scheme, parts.hostname or "", parts.port))
    to_sign[DATE_HEADER.lower()] = date
    signed = _signable(to_sign)
    canonical = canonical_request(method, parts.path, _query(parts.query), to_sign, signed, body)
    signature = _signature(secret_key, date, canonical)
    authorization = (
        f"{ALGORITHM} Access={access_key}, SignedHeaders={';'.join(signed)}, Signature={signature}"
    )
    return {DATE_HEADER: date, "Authorization": authorization}


def verify_request(
    method: str,
    path_with_query: str,
    headers: Mapping[str, str],
    body: bytes,
    secret_lookup: Callable[[str], str | None],
    now: datetime,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
) -> str | None:
    """Why a signed request is refused ("missing", "unknown_key", "bad_signature",
    "clock_skew"), or None when it is authentic.

    `path_with_query` is the request target as received, still percent-encoded (aiohttp:
    `request.raw_path`); `headers` must hold every header the client signed.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    authorization, date = lowered.get("authorization"), lowered.get(DATE_HEADER.lower())
    if not authorization or not date:
        return "missing"
    match = _AUTHORIZATION.fullmatch(authorization.strip())
    if match is None:
        return "bad_signature"
    access_key, signed_list, signature = match.groups()
    secret_key = secret_lookup(access_key)
    if secret_key is None:
        return "unknown_key"
    signed = signed_list.split(";")
    if any(name not in lowered for name in signed) or DATE_HEADER.lower() not in signed:
        return "bad_signature"
    parts = urlsplit(path_with_query)
    canonical = canonical_request(method, parts.path, _query(parts.query), lowered, signed, body)
    if not hmac.compare_digest(_signature(secret_key, date, canonical), signature.lower()):
        return "bad_signature"
    try:
        signed_at = datetime.strptime(date, DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return "bad_signature"
    return "clock_skew" if abs(_utc(now) - signed_at) > max_skew else None


def canonical_request(
    method: str,
    raw_path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    signed_headers: list[str],
    body: bytes,
) -> str:
    """The canonical request; `headers` keyed by lower-case name, `query` decoded pairs."""
    # Huawei decodes the path once, then encodes every segment with only "~" kept safe.
    uri = "/".join(_encode(segment) for segment in unquote(raw_path).split("/"))
    if not uri.endswith("/"):
        uri += "/"
    canonical_query = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(query))
    canonical_headers = "".join(f"{name}:{headers[name].strip()}\n" for name in signed_headers)
    return "\n".join(
        (
            method.upper(),
            uri,
            canonical_query,
            canonical_headers,
            ";".join(signed_headers),
            hashlib.sha256(body).hexdigest(),
        )
    )


def _signature(secret_key: str, date: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    string_to_sign = f"{ALGORITHM}\n{date}\n{digest}"
    return hmac.new(secret_key.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


def _signable(headers: Mapping[str, str]) -> list[str]:
    # Huawei's signer leaves out header names with "_" (gateways may drop them).
    return sorted(name for name in headers if "_" not in name)


def _query(raw_query: str) -> list[tuple[str, str]]:
    return parse_qsl(raw_query, keep_blank_values=True)


def _encode(value: str) -> str:
    return quote(value, safe="~")


def _host(scheme: str, hostname: str, port: int | None) -> str:
    """The Host header an HTTP client sends: the port only when it is not the default."""
    host = f"[{hostname}]" if ":" in hostname else hostname
    return host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"


def _utc(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
