"""`vias-exporter --healthcheck [PATH]`: the container's HEALTHCHECK and exec probes. Asks the
running exporter's `/-/healthy` (or PATH) the way it serves: HTTP, or HTTPS with the
`--web.config.file` TLS settings. Without `--web.*` flags of its own it takes the running
exporter's, from PID 1's command line (the exporter is PID 1 in its container)."""

from __future__ import annotations

import http.client
import ssl
from pathlib import Path

from exporter.webconfig import WebConfig

TIMEOUT_SECONDS = 4.0  # under Docker's and Kubernetes' usual 5 s probe timeout
RUNNING_COMMAND_LINE = Path("/proc/1/cmdline")
_WEB_FLAGS = ("--web.listen-address", "--web.config.file")


def running_web_args(command_line: Path = RUNNING_COMMAND_LINE) -> list[str]:
    """The `--web.listen-address`/`--web.config.file` arguments of the exporter whose
    command line this is (NUL-separated, as /proc gives it); none when it is not one."""
    try:
        words = command_line.read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []
    starts = [i for i, word in enumerate(words) if Path(word).name == "vias-exporter"]
    if not starts:
        return []
    args: list[str] = []
    rest = iter(words[starts[0] + 1 :])
    for word in rest:
        flag, equals, _ = word.partition("=")
        if flag in _WEB_FLAGS:
            args += [word] if equals else [word, next(rest, "")]
    return args


def _client_context(web_config: WebConfig) -> ssl.SSLContext | None:
    tls = web_config.tls_server_config
    if tls is None:
        return None
    # Our own process on loopback: liveness, not trust; the name in the certificate is
    # the service's, not 127.0.0.1.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if tls.client_auth_type != "NoClientCert":
        # The server's own certificate as the client's: accepted when the client CA
        # signed it (docs/deployment.md, "Probes with TLS and basic auth").
        context.load_cert_chain(tls.cert_file, tls.key_file)
    return context


def probe(host: str | None, port: int, web_config: WebConfig | None, path: str) -> str | None:
    """None when `path` answers 200, else what went wrong."""
    if host in (None, "", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    context = _client_context(web_config) if web_config else None
    connection: http.client.HTTPConnection
    if context is None:
        connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT_SECONDS)
    else:
        connection = http.client.HTTPSConnection(
            host, port, timeout=TIMEOUT_SECONDS, context=context
        )
    scheme = "http" if context is None else "https"
    try:
        connection.request("GET", path)
        response = connection.getresponse()
    except (OSError, http.client.HTTPException) as error:
        return f"{scheme}://{host}:{port}{path}: {error}"
    finally:
        connection.close()
    if response.status != 200:
        return f"{scheme}://{host}:{port}{path}: HTTP {response.status}"
    return None
