"""What a connection's first bytes say about its request (exporter/request_peek.py): a
probe is let in past the connection cap only when its bytes say so, and a request that
could still turn out to be one is never refused for its first bytes."""

from __future__ import annotations

import pytest

from exporter.request_peek import FirstRequest, classify_request


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (b"GET /-/healthy HTTP/1.1\r\n", FirstRequest.PROBE),
        (b"HEAD /-/ready HTTP/1.1\r\n", FirstRequest.PROBE),
        (b"GET /-/healthy?verbose=1 HTTP/1.1\r\n", FirstRequest.PROBE),
        (b"GET /metrics HTTP/1.1\r\n", FirstRequest.OTHER),
        (b"GET /-/healthyx HTTP/1.1\r\n", FirstRequest.OTHER),
        (b"POST /-/healthy HTTP/1.1\r\n", FirstRequest.OTHER),
        (b"\x16\x03\x01\x02\x00", FirstRequest.OTHER),  # TLS on the plain-HTTP port
        (b"", FirstRequest.UNKNOWN),
        (b"GE", FirstRequest.UNKNOWN),
        (b"GET /-/hea", FirstRequest.UNKNOWN),
        (b"GET /-/healthy", FirstRequest.UNKNOWN),
    ],
)
def test_first_bytes_classify_the_request(start: bytes, expected: FirstRequest) -> None:
    assert classify_request(start) is expected
