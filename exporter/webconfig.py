"""`--web.config.file` in the exporter-toolkit format Prometheus exporters share:
`tls_server_config` (TLS, optionally mTLS) and `basic_auth_users` (bcrypt hashes)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import bcrypt
import structlog
import yaml
from aiohttp import web
from pydantic import BaseModel, ConfigDict, FilePath, ValidationError, model_validator

from exporter.config_rules import yaml_problem
from exporter.settings import ConfigError
from exporter.web_limit_counts import LimitCounts, Tally

log = structlog.get_logger(__name__)

ClientAuthType = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# Python's TLS verifies every client certificate it asks for, against the CAs loaded (it
# has no verification callback: CPython issue #75425), and a failed check fails the
# handshake. Go's RequestClientCert asks and never verifies: not asking lets in the same
# clients, as the certificate is never read. RequireAnyClientCert cannot be had at all.
_CLIENT_CERT_MODES = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_NONE,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}


_BCRYPT_HASH = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")


class TLSServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cert_file: FilePath
    key_file: FilePath
    client_auth_type: ClientAuthType = "NoClientCert"
    client_ca_file: FilePath | None = None
    min_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] = "TLS12"

    @model_validator(mode="after")
    def _client_auth(self) -> TLSServerConfig:
        if self.client_auth_type == "RequireAnyClientCert":
            # Go requires a certificate and accepts any, unverified; Python's TLS can
            # require one only by verifying it (`_CLIENT_CERT_MODES`).
            raise ValueError(
                "client_auth_type RequireAnyClientCert is not supported (a client certificate "
                "cannot be required without verifying it): use RequireAndVerifyClientCert "
                "with client_ca_file"
            )
        if "Verify" in self.client_auth_type and self.client_ca_file is None:
            raise ValueError(f"client_auth_type {self.client_auth_type} needs client_ca_file")
        return self

    def ssl_context(self) -> ssl.SSLContext:
        """The server's context; at each handshake the certificate and key are read again
        if their files changed (`_Rotation`), as exporter-toolkit reads them per handshake."""
        context = self.build_context()
        context.sni_callback = _Rotation(self, context).on_handshake
        return context

    def build_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = _TLS_VERSIONS[self.min_version]
        context.load_cert_chain(self.cert_file, self.key_file)
        context.verify_mode = _CLIENT_CERT_MODES[self.client_auth_type]
        if self.client_ca_file is not None:
            context.load_verify_locations(cafile=str(self.client_ca_file))
        return context

    def files_stamp(self) -> tuple[tuple[int, int, int], ...]:
        """What changes when the certificate or key file is replaced or rewritten."""
        stats = (self.cert_file.stat(), self.key_file.stat())
        return tuple((stat.st_ino, stat.st_size, stat.st_mtime_ns) for stat in stats)


class _Rotation:
    """Swaps a handshake onto a context with the certificate now in the files, made once
    per change of the files (a stat of both per handshake). Until a change loads (a
    half-written pair, say), the last good certificate is served."""

    def __init__(self, config: TLSServerConfig, context: ssl.SSLContext) -> None:
        self._config = config
        self._current = context
        self._stamp = config.files_stamp()
        self._failed = Tally("TLS certificate not reloaded: the old one is served")

    def on_handshake(
        self, connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext
    ) -> None:
        try:
            stamp = self._config.files_stamp()
        except OSError:
            stamp = self._stamp  # being replaced: the next handshake looks again
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._current = self._config.build_context()
                log.info("TLS certificate reloaded", cert_file=str(self._config.cert_file))
            except (OSError, ssl.SSLError) as error:
                self._failed.hit(error=str(error))
        if self._current is not context:
            connection.context = self._current


class WebConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tls_server_config: TLSServerConfig | None = None
    basic_auth_users: dict[str, str] | None = None

    @model_validator(mode="after")
    def _bcrypt_hashes(self) -> WebConfig:
        for user, hashed in (self.basic_auth_users or {}).items():
            if not _BCRYPT_HASH.fullmatch(hashed):
                raise ValueError(f"basic_auth_users.{user}: not a bcrypt hash")
        return self


def load_web_config(path: Path) -> WebConfig:
    """Read and validate the file; the TLS files are loaded now so errors show at start-up."""
    try:
        config = WebConfig.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
        if config.tls_server_config is not None:
            config.tls_server_config.ssl_context()
    except OSError as error:
        raise ConfigError(f"--web.config.file {path}: cannot read: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"--web.config.file {path}: {yaml_problem(error)}") from None
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise ConfigError(f"--web.config.file {path}: {problems}") from None
    except ssl.SSLError as error:
        raise ConfigError(f"--web.config.file {path}: TLS: {error.reason}") from None
    return config


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


UNAUTHENTICATED_PATHS = frozenset({"/-/healthy", "/-/ready"})


BCRYPT_THREADS = 1  # checks of passwords not seen before, apart from the renders' threads
MAX_PENDING_CHECKS = 8  # queued or running; more are told 429 at once
REFUSED_KEPT = 1024  # wrong credentials remembered (most recent), each refused without bcrypt
VERIFIED_KEPT = 64  # right ones: only a password's owner can add one


class BasicAuth:
    """aiohttp middleware checking bcrypt hashes, as exporter-toolkit does. bcrypt is slow
    by design: each result is remembered by a SHA-256 of (user, hash, password), checks run
    on a thread of their own (never the pool that renders /metrics), at most
    `MAX_PENDING_CHECKS` at a time; an unknown user is checked against a dummy hash of the
    same cost, so that the time taken does not tell which users exist."""

    def __init__(self, users: dict[str, str], counts: LimitCounts | None = None) -> None:
        self._users = {user: hashed.encode() for user, hashed in users.items()}
        cost = max(int(hashed[4:6]) for hashed in self._users.values())
        self._dummy = bcrypt.hashpw(b"no user has this password", bcrypt.gensalt(rounds=cost))
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        self._refused: OrderedDict[bytes, None] = OrderedDict()
        self._checks = ThreadPoolExecutor(BCRYPT_THREADS, thread_name_prefix="bcrypt")
        self._pending = 0
        self.busy = Tally(
            "basic auth check refused: too many bcrypt checks pending",
            "basic_auth_pending_checks",
            counts,
        )

    async def _valid(self, header: str) -> bool | None:
        """Whether the credentials are right; None when too many checks are pending."""
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        hashed = self._users.get(user)
        checked = self._dummy if hashed is None else hashed
        key = hashlib.sha256(b"\0".join((user.encode(), checked, password.encode()))).digest()
        if key in self._verified:
            return True
        if key in self._refused:
            return False
        if self._pending >= MAX_PENDING_CHECKS:
            self.busy.hit(limit=MAX_PENDING_CHECKS)
            return None
        self._pending += 1
        try:
            loop = asyncio.get_running_loop()
            right = await loop.run_in_executor(
                self._checks, bcrypt.checkpw, password.encode(), checked
            )
        finally:
            self._pending -= 1
        right = right and hashed is not None
        if right:
            _remember(self._verified, key, VERIFIED_KEPT)
        else:
            _remember(self._refused, key, REFUSED_KEPT)
        return right

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # Probes (Docker HEALTHCHECK, Kubernetes) carry no credentials; the health and
        # readiness answers say nothing about the jobs.
        if request.path in UNAUTHENTICATED_PATHS:
            return await handler(request)
        valid = await self._valid(request.headers.get("Authorization", ""))
        if valid:
            return await handler(request)
        if valid is None:
            raise web.HTTPTooManyRequests(text="Too many logins\n", headers={"Retry-After": "1"})
        raise web.HTTPUnauthorized(
            text="Unauthorized\n", headers={"WWW-Authenticate": 'Basic realm="vias-exporter"'}
        )


def _remember(kept: OrderedDict[bytes, None], key: bytes, bound: int) -> None:
    kept[key] = None
    if len(kept) > bound:
        kept.popitem(last=False)
