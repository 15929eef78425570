"""`--web.config.file` in the exporter-toolkit format Prometheus exporters share:
`tls_server_config` (TLS, optionally mTLS) and `basic_auth_users` (bcrypt hashes)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal

import bcrypt
import yaml
from aiohttp import web
from pydantic import BaseModel, ConfigDict, FilePath, ValidationError, model_validator

from exporter.settings import ConfigError, yaml_problem

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
_CLIENT_CERT_MODES = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}


class TLSServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cert_file: FilePath
    key_file: FilePath
    client_auth_type: ClientAuthType = "NoClientCert"
    client_ca_file: FilePath | None = None
    min_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] = "TLS12"

    @model_validator(mode="after")
    def _ca_when_verifying(self) -> TLSServerConfig:
        if "Verify" in self.client_auth_type and self.client_ca_file is None:
            raise ValueError(f"client_auth_type {self.client_auth_type} needs client_ca_file")
        return self

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = _TLS_VERSIONS[self.min_version]
        context.load_cert_chain(self.cert_file, self.key_file)
        context.verify_mode = _CLIENT_CERT_MODES[self.client_auth_type]
        if self.client_ca_file is not None:
            context.load_verify_locations(cafile=str(self.client_ca_file))
        return context


class WebConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tls_server_config: TLSServerConfig | None = None
    basic_auth_users: dict[str, str] | None = None

    @model_validator(mode="after")
    def _bcrypt_hashes(self) -> WebConfig:
        for user, hashed in (self.basic_auth_users or {}).items():
            if not hashed.startswith(("$2a$", "$2b$", "$2y$")):
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


class BasicAuth:
    """aiohttp middleware checking bcrypt hashes. bcrypt is slow by design, so a verified
    (user, password) pair is remembered by its SHA-256 and checks run off the event loop."""

    def __init__(self, users: dict[str, str]) -> None:
        self._users = {user: hashed.encode() for user, hashed in users.items()}
        self._verified: set[bytes] = set()

    async def _valid(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        hashed = self._users.get(user)
        if hashed is None:
            return False
        fingerprint = hashlib.sha256(hashed + b"\0" + password.encode()).digest()
        if any(hmac.compare_digest(fingerprint, known) for known in self._verified):
            return True
        valid = await asyncio.to_thread(bcrypt.checkpw, password.encode(), hashed)
        if valid:
            self._verified.add(fingerprint)
        return valid

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # Probes (Docker HEALTHCHECK, Kubernetes) carry no credentials; the health and
        # readiness answers say nothing about the jobs.
        if request.path in UNAUTHENTICATED_PATHS or await self._valid(
            request.headers.get("Authorization", "")
        ):
            return await handler(request)
        raise web.HTTPUnauthorized(
            text="Unauthorized\n", headers={"WWW-Authenticate": 'Basic realm="vias-exporter"'}
        )
