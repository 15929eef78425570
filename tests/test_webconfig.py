"""--web.config.file: real TLS handshakes (certificates made in the test) and real basic auth."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
import trustme
from structlog.testing import capture_logs
from structlog.typing import EventDict

from exporter.service import Exporter
from exporter.settings import ConfigError
from exporter.webconfig import load_web_config
from tests.support import make_config, serving

PASSWORD = "scrape-pa55"


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def logs() -> Iterator[list[EventDict]]:
    with capture_logs() as captured:
        yield captured


@pytest.fixture
async def idle_exporter() -> AsyncIterator[Exporter]:
    config = make_config(
        [{"project_id": "p1", "endpoint": "http://127.0.0.1:9", "auth_token": "t"}]
    )
    async with Exporter(config) as exporter:
        yield exporter


def write_web_config(
    tmp_path: Path, ca: trustme.CA, *, mtls: bool = False, users: dict[str, str] | None = None
) -> Path:
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "server.crt"))
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.crt"))
    lines = [
        "tls_server_config:",
        f"  cert_file: {tmp_path / 'server.crt'}",
        f"  key_file: {tmp_path / 'server.key'}",
        "  min_version: TLS12",
    ]
    if mtls:
        lines += [
            "  client_auth_type: RequireAndVerifyClientCert",
            f"  client_ca_file: {tmp_path / 'ca.crt'}",
        ]
    if users:
        lines += ["basic_auth_users:"] + [f"  {user}: '{hashed}'" for user, hashed in users.items()]
    path = tmp_path / "web.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def client_context(ca: trustme.CA, with_cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if with_cert:
        ca.issue_cert("scraper.example").configure_cert(context)
    return context


async def get_status(url: str, **kwargs: Any) -> int:
    async with aiohttp.ClientSession() as session, session.get(url, **kwargs) as response:
        return response.status


async def test_tls_serves_https_and_refuses_plain_http(
    tmp_path: Path, ca: trustme.CA, idle_exporter: Exporter
) -> None:
    web_config = load_web_config(write_web_config(tmp_path, ca))
    async with serving(idle_exporter, web_config) as url:
        assert url.startswith("https://")
        assert await get_status(url + "/metrics", ssl=client_context(ca)) == 200
        with pytest.raises(aiohttp.ClientError):
            await get_status(url.replace("https://", "http://") + "/metrics")
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await get_status(url + "/metrics")  # not trusting our CA


async def test_mutual_tls_requires_a_client_certificate(
    tmp_path: Path, ca: trustme.CA, idle_exporter: Exporter
) -> None:
    web_config = load_web_config(write_web_config(tmp_path, ca, mtls=True))
    async with serving(idle_exporter, web_config) as url:
        assert await get_status(url + "/metrics", ssl=client_context(ca, with_cert=True)) == 200
        with pytest.raises(aiohttp.ClientError):
            await get_status(url + "/metrics", ssl=client_context(ca))


async def test_basic_auth_with_bcrypt_hashes(
    tmp_path: Path, ca: trustme.CA, idle_exporter: Exporter
) -> None:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web_config = load_web_config(write_web_config(tmp_path, ca, users={"prometheus": hashed}))
    context = client_context(ca)
    async with serving(idle_exporter, web_config) as url:
        right = aiohttp.BasicAuth("prometheus", PASSWORD)
        assert await get_status(url + "/metrics", ssl=context, auth=right) == 200
        assert await get_status(url + "/metrics", ssl=context, auth=right) == 200  # cached
        for wrong in (aiohttp.BasicAuth("prometheus", "nope"), aiohttp.BasicAuth("eve", PASSWORD)):
            assert await get_status(url + "/metrics", ssl=context, auth=wrong) == 401
        assert await get_status(url + "/", ssl=context) == 401


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("basic_auth_users:\n  prometheus: plain\n", "not a bcrypt hash"),
        (
            "tls_server_config:\n  cert_file: /nonexistent.crt\n  key_file: /nonexistent.key\n",
            "tls_server_config.cert_file",
        ),
        ("tls_server_config: [\n", "malformed YAML"),
        ("colour: red\n", "colour: Extra inputs are not permitted"),
    ],
)
def test_bad_web_config_names_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "web.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_web_config(path)
    assert message in str(caught.value)


async def served_certificate(url: str, ca: trustme.CA) -> bytes:
    """The DER certificate the server presents in a new handshake."""
    port = int(url.rsplit(":", 1)[1])
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(ca))
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return bytes(der)


async def test_a_rotated_certificate_is_served_without_a_restart(
    tmp_path: Path, ca: trustme.CA, idle_exporter: Exporter, logs: list[EventDict]
) -> None:
    """Issue 21, item 10: the certificate was loaded once; after a rotation the old one
    was served until a restart. Now the files are looked at per handshake."""
    web_config = load_web_config(write_web_config(tmp_path, ca))
    first = ssl.PEM_cert_to_DER_cert((tmp_path / "server.crt").read_text())
    async with serving(idle_exporter, web_config) as url:
        assert await served_certificate(url, ca) == first
        rotated = ca.issue_cert("127.0.0.1", "localhost")  # what cert-manager would write
        rotated.cert_chain_pems[0].write_to_path(str(tmp_path / "server.crt"))
        rotated.private_key_pem.write_to_path(str(tmp_path / "server.key"))
        second = ssl.PEM_cert_to_DER_cert(rotated.cert_chain_pems[0].bytes().decode())
        assert await served_certificate(url, ca) == second
        # Half-way through the next rotation (a new key, the old certificate): the last
        # good pair is served, and the failure logged.
        ca.issue_cert("127.0.0.1").private_key_pem.write_to_path(str(tmp_path / "server.key"))
        assert await served_certificate(url, ca) == second
    assert [entry["event"] for entry in logs if entry["log_level"] == "warning"] == [
        "TLS certificate not reloaded: the old one is served"
    ]


async def test_request_client_cert_lets_in_a_certificate_nobody_can_verify(
    tmp_path: Path, ca: trustme.CA, idle_exporter: Exporter
) -> None:
    """As Go's RequestClientCert: a client certificate is never verified, so a scraper
    whose certificate comes from a CA the exporter does not know is let in, as is one
    with none (before: CERT_OPTIONAL verified it, the handshake failed)."""
    path = write_web_config(tmp_path, ca)
    path.write_text(path.read_text() + "  client_auth_type: RequestClientCert\n")
    web_config = load_web_config(path)
    unknown_ca_cert = client_context(ca)
    trustme.CA().issue_cert("scraper.example").configure_cert(unknown_ca_cert)
    async with serving(idle_exporter, web_config) as url:
        assert await get_status(url + "/metrics", ssl=unknown_ca_cert) == 200
        assert await get_status(url + "/metrics", ssl=client_context(ca)) == 200


def test_require_any_client_cert_is_refused_at_start_up(tmp_path: Path, ca: trustme.CA) -> None:
    """It was accepted, then every client was refused (Python verifies every client
    certificate it accepts): now a configuration error saying what to use instead."""
    path = write_web_config(tmp_path, ca)
    path.write_text(path.read_text() + "  client_auth_type: RequireAnyClientCert\n")
    with pytest.raises(ConfigError) as caught:
        load_web_config(path)
    assert "tls_server_config" in str(caught.value)
    assert "RequireAnyClientCert is not supported" in str(caught.value)
    assert "RequireAndVerifyClientCert" in str(caught.value)
