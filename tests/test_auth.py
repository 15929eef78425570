"""Auth pieces on their own: the cool-down after refused credentials, AK/SK headers."""

from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from exporter.auth import AkSkAuth, CoolDown, TokenAuth
from exporter.errors import ViasAuthCoolDown, ViasHTTPError
from exporter.signing import verify_request


def refused() -> ViasHTTPError:
    return ViasHTTPError(status=401, endpoint="/v2/{project_id}/tasks", error_code="APIGW.0301")


def test_cool_down_pauses_doubles_and_resets() -> None:
    now = [0.0]
    cool_down = CoolDown(30, 600, clock=lambda: now[0])
    cool_down.check()  # nothing refused yet
    assert cool_down.failed(refused()) == 30
    now[0] = 12.0
    with pytest.raises(ViasAuthCoolDown) as skipped:
        cool_down.check()
    assert str(skipped.value) == (
        "skipped: credentials refused (APIGW.0301) 12 s ago, next try in 18 s"
    )
    assert skipped.value.error_code == "APIGW.0301" and not skipped.value.request_id
    now[0] = 30.0
    cool_down.check()  # the pause is over: one more attempt may go
    assert [cool_down.failed(refused()) for _ in range(6)] == [60, 120, 240, 480, 600, 600]
    cool_down.succeeded()
    assert cool_down.failed(refused()) == 30


def test_cool_down_of_zero_never_blocks() -> None:
    cool_down = CoolDown(0, 600)
    cool_down.failed(refused())
    cool_down.check()


async def test_token_header() -> None:
    assert await TokenAuth(SecretStr("t0k")).headers("GET", "https://x/y", b"") == {
        "X-Auth-Token": "t0k"
    }


async def test_aksk_headers_verify_and_carry_the_project() -> None:
    moment = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    auth = AkSkAuth("AK1", SecretStr("SK1"), "p1", clock=lambda: moment)
    url = "https://vias.cn-north-4.myhuaweicloud.com/v2/p1/tasks?page=2&page_size=1000"
    headers = await auth.headers("GET", url, b"")
    assert headers["X-Project-Id"] == "p1"
    assert headers["Authorization"].startswith("SDK-HMAC-SHA256 Access=AK1, SignedHeaders=")
    received = {**headers, "Host": "vias.cn-north-4.myhuaweicloud.com"}
    lookup = {"AK1": "SK1"}.get
    assert (
        verify_request("GET", "/v2/p1/tasks?page=2&page_size=1000", received, b"", lookup, moment)
        is None
    )
    assert (
        verify_request("GET", "/v2/p1/tasks?page=3&page_size=1000", received, b"", lookup, moment)
        == "bad_signature"
    )
