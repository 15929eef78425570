"""AK/SK signing: byte-identical to Huawei's own signer, and verifiable."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlencode, urlsplit

import pytest
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

from exporter.signing import DATE_FORMAT, sign_request, verify_request

AK, SK = "HPUAEXAMPLEACCESSKEY", "secret/Key+with=chars"
NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
HOST = "vias.cn-north-4.myhuaweicloud.com"


@dataclass
class _Credentials:
    ak: str
    sk: str


def huawei_authorization(
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    body: bytes,
) -> str:
    """The Authorization header Huawei's SDK computes, with X-Sdk-Date frozen at NOW."""
    request = SdkRequest(
        method=method,
        schema="https",
        host=HOST,
        resource_path=path,
        query_params=list(query),
        header_params={**headers, "X-Sdk-Date": NOW.strftime(DATE_FORMAT)},
        body=body,
    )
    signed: str = Signer(_Credentials(AK, SK)).sign(request).header_params["Authorization"]
    return signed


def url_of(path: str, query: list[tuple[str, str]]) -> str:
    return f"https://{HOST}{path}" + (f"?{urlencode(query, quote_via=quote)}" if query else "")


CASES = [
    pytest.param("GET", "/v2/p1/tasks", [], {}, b"", id="plain-get"),
    pytest.param(
        "GET",
        "/v2/p1/tasks",
        [("page_size", "1000"), ("page", "2"), ("task_name", "east gate ~cam 北门")],
        {"X-Project-Id": "p1"},
        b"",
        id="query-special-chars",
    ),
    pytest.param(
        "GET",
        "/v2/p1/batch-tasks",
        [("video_group", "b,a"), ("company", "z"), ("company", "a"), ("empty", "")],
        {"Content-Type": "application/json"},
        b"",
        id="repeated-keys",
    ),
    pytest.param(
        "GET",
        "/v1/p1/infer/tasks/id%20with%20space/caf%C3%A9~x",
        [("a+b", "c/d&e=f")],
        {},
        b"",
        id="path-special-chars",
    ),
    pytest.param(
        "POST",
        "/v3/auth/tokens",
        [],
        {"Content-Type": "application/json;charset=utf8", "X-Project-Id": "p1"},
        b'{"auth": {"identity": {"methods": ["password"]}}, "x": "\xc3\xa9"}',
        id="post-json",
    ),
    pytest.param(
        "GET",
        "/v2/p1/tasks/",
        [("page", "1")],
        {"X-Project-Id": "p1", "X-Custom": "  padded value  ", "Under_Score": "unsigned"},
        b"",
        id="extra-headers",
    ),
]


@pytest.mark.parametrize(("method", "path", "query", "headers", "body"), CASES)
def test_authorization_matches_huawei_signer(
    method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str], body: bytes
) -> None:
    ours = sign_request(method, url_of(path, query), headers, body, AK, SK, NOW)
    assert ours["X-Sdk-Date"] == "20240506T070809Z"
    assert ours["Authorization"] == huawei_authorization(method, path, query, headers, body)


@pytest.mark.parametrize(("method", "path", "query", "headers", "body"), CASES)
def test_verify_accepts_what_sign_produces(
    method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str], body: bytes
) -> None:
    url = url_of(path, query)
    sent = {**headers, "Host": HOST, **sign_request(method, url, headers, body, AK, SK, NOW)}
    target = urlsplit(url)._replace(scheme="", netloc="").geturl()
    assert verify_request(method, target, sent, body, {AK: SK}.get, NOW) is None


Change = Callable[[str, dict[str, str]], tuple[str, dict[str, str]]]


def _signed(url: str = f"https://{HOST}/v2/p1/tasks?page=1") -> tuple[str, dict[str, str]]:
    headers = {"X-Project-Id": "p1"}
    signed = sign_request("GET", url, headers, b"", AK, SK, NOW)
    return "/v2/p1/tasks?page=1", {**headers, "Host": HOST, **signed}


def test_host_from_url_keeps_non_default_port() -> None:
    url = "http://127.0.0.1:9801/v2/p1/tasks"
    plain = sign_request("GET", url, {}, b"", AK, SK, NOW)
    explicit = sign_request("GET", url, {"Host": "127.0.0.1:9801"}, b"", AK, SK, NOW)
    assert plain == explicit
    default_port = sign_request("GET", "https://h:443/x", {}, b"", AK, SK, NOW)
    assert default_port == sign_request("GET", "https://h/x", {}, b"", AK, SK, NOW)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda t, h: (t.replace("page=1", "page=2"), h), "bad_signature"),
        (lambda t, h: (t.replace("/p1/", "/p2/"), h), "bad_signature"),
        (lambda t, h: (t, {**h, "X-Project-Id": "p2"}), "bad_signature"),
        (lambda t, h: (t, {k: v for k, v in h.items() if k != "X-Project-Id"}), "bad_signature"),
        (lambda t, h: (t, {**h, "Authorization": h["Authorization"][:-1] + "0"}), "bad_signature"),
        (lambda t, h: (t, {**h, "Authorization": "SDK-HMAC-SHA256 junk"}), "bad_signature"),
        (lambda t, h: (t, {k: v for k, v in h.items() if k != "Authorization"}), "missing"),
        (lambda t, h: (t, {k: v for k, v in h.items() if k != "X-Sdk-Date"}), "missing"),
    ],
)
def test_tampered_request_is_rejected(change: Change, reason: str) -> None:
    target, headers = change(*_signed())
    assert verify_request("GET", target, headers, b"", {AK: SK}.get, NOW) == reason


def test_tampered_body_and_method_are_rejected() -> None:
    target, headers = _signed()
    assert verify_request("GET", target, headers, b"x", {AK: SK}.get, NOW) == "bad_signature"
    assert verify_request("POST", target, headers, b"", {AK: SK}.get, NOW) == "bad_signature"


def test_unknown_key_and_wrong_secret() -> None:
    target, headers = _signed()
    assert verify_request("GET", target, headers, b"", lambda _: None, NOW) == "unknown_key"
    assert verify_request("GET", target, headers, b"", {AK: "other"}.get, NOW) == "bad_signature"


@pytest.mark.parametrize(
    ("offset", "reason"),
    [
        (timedelta(minutes=14, seconds=59), None),
        (-timedelta(minutes=15), None),
        (timedelta(minutes=15, seconds=1), "clock_skew"),
        (-timedelta(hours=3), "clock_skew"),
    ],
)
def test_clock_skew(offset: timedelta, reason: str | None) -> None:
    target, headers = _signed()
    assert verify_request("GET", target, headers, b"", {AK: SK}.get, NOW + offset) == reason


def test_naive_now_is_utc() -> None:
    target, headers = _signed()
    naive = NOW.replace(tzinfo=None)
    assert (
        sign_request("GET", f"https://{HOST}{target}", {"X-Project-Id": "p1"}, b"", AK, SK, naive)[
            "Authorization"
        ]
        == headers["Authorization"]
    )
    assert verify_request("GET", target, headers, b"", {AK: SK}.get, naive) is None
