"""Content negotiation of /metrics over real HTTP: q-values decide the format and the
encoding, and the answer says it varies with both headers."""

from __future__ import annotations

import gzip

import pytest

from tests.support import RunningSimulator, StartExporter, make_config, target

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)


@pytest.mark.parametrize(
    ("accept", "accept_encoding", "openmetrics", "gzipped"),
    [
        (PROMETHEUS_ACCEPT, "gzip", True, True),
        ("", "", False, False),
        ("*/*", "gzip, deflate", False, True),
        ("text/plain;q=1, application/openmetrics-text;q=0.5", "", False, False),
        ("application/openmetrics-text;q=0", "gzip;q=0", False, False),
        ("application/openmetrics-text", "deflate, gzip;q=0.1", True, True),
        ("text/plain", "*", False, True),
        ("text/plain", "gzip;q=0, *", False, False),
        ("application/openmetrics-text;q=bad, text/plain", "gzip;q=x", False, False),
    ],
)
async def test_format_and_encoding_follow_the_q_values(
    simulator: RunningSimulator,
    start_exporter: StartExporter,
    accept: str,
    accept_encoding: str,
    openmetrics: bool,
    gzipped: bool,
) -> None:
    async with start_exporter(make_config([target(simulator.url)])) as running:
        await running.exporter.poll_all_once()
        headers = {"Accept": accept, "Accept-Encoding": accept_encoding}
        async with running.session.get(
            running.url + "/metrics", headers=headers, auto_decompress=False
        ) as response:
            body = await response.read()
            assert response.status == 200
            assert response.headers["Vary"] == "Accept, Accept-Encoding"
            assert (response.headers.get("Content-Encoding") == "gzip") is gzipped
            text = (gzip.decompress(body) if gzipped else body).decode()
            content_type = response.headers["Content-Type"]
    assert content_type.startswith("application/openmetrics-text" if openmetrics else "text/plain")
    assert text.endswith("# EOF\n") is openmetrics
    assert "vias_up{" in text
