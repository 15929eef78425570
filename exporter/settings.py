"""Configuration: one target from VIAS_* environment variables, or many from a YAML file.

Both paths validate through the same models; errors name the field (or the environment
variable) and never echo the value, which may be a secret. List names are checked against
the registry the caller hands in (`load_config(path, REGISTRY)`, or `context=REGISTRY`):
settings sits beside the lists, not above them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict, SettingsError

from exporter.config_rules import (
    DEFAULT_LABEL_VALUE_MAX_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES,
    ListChoices,
    ProjectId,
    SecretFile,
    Source,
    Sources,
    default_sources,
    env_value_problem,
    read_secret_files,
    yaml_problem,
)

ENV_PREFIX = "VIAS_"


class ConfigError(Exception):
    """Invalid configuration; the message names each bad field."""


def _http_url(raw: object) -> str | None:
    """An http(s) URL, kept as text without a trailing slash."""
    if raw is None or raw == "":
        return None
    return str(AnyHttpUrl(str(raw))).rstrip("/")


HttpUrlText = Annotated[str | None, BeforeValidator(_http_url)]
AccountName = Annotated[str | None, Field(min_length=1, max_length=64, pattern=r"^[\w.@:/-]+$")]


def _check_login(config: TargetConfig | DiscoveryConfig, mode: Literal["password", "aksk"]) -> None:
    """What a password login or AK/SK signing needs besides being chosen."""
    if mode == "password":
        missing = [n for n in ("username", "password", "domain_name") if not getattr(config, n)]
        if missing:
            raise ValueError(f"password login needs {', '.join(missing)}")
    elif not (config.access_key and config.secret_key):
        raise ValueError("AK/SK signing needs both access_key and secret_key")


class TargetConfig(BaseModel):
    """One project to watch: where, how to authenticate, what to list, how often."""

    model_config = ConfigDict(extra="forbid")

    project_id: ProjectId
    region: str | None = None
    endpoint: HttpUrlText = None
    iam_endpoint: HttpUrlText = None
    auth_token: SecretStr | None = None
    auth_token_file: SecretFile = None
    username: str | None = None
    password: SecretStr | None = None
    password_file: SecretFile = None
    domain_name: str | None = None
    access_key: str | None = None
    secret_key: SecretStr | None = None
    secret_key_file: SecretFile = None
    sources: Sources  # left out: the registry's defaults (`default_sources`)
    # The account's name in the budget plan (default: access key, user or token digest).
    account_name: AccountName = None
    poll_interval_seconds: float = Field(default=60.0, gt=0)
    # Per list, in seconds; a list not named here polls every `poll_interval_seconds` times
    # its own factor (edge_pools: 5, the others 1; `service.poll_interval`).
    poll_intervals: dict[Source, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any, info: ValidationInfo) -> Any:
        return default_sources(data, info)

    @field_validator("sources")
    @classmethod
    def _some_sources(cls, sources: tuple[str, ...]) -> tuple[str, ...]:
        if not sources:
            raise ValueError("at least one source is needed")
        return tuple(dict.fromkeys(sources))

    @model_validator(mode="after")
    def _complete(self) -> TargetConfig:
        read_secret_files(self, "auth_token", "password", "secret_key")
        if self.endpoint is None and not self.region:
            raise ValueError("endpoint or region is required")
        self._check_auth()
        return self

    def _check_auth(self) -> None:
        modes = {
            "auth_token": self.auth_token is not None,
            "username/password": self.username is not None or self.password is not None,
            "access_key/secret_key": self.access_key is not None or self.secret_key is not None,
        }
        chosen = [name for name, present in modes.items() if present]
        if len(chosen) != 1:
            found = ", ".join(chosen) or "none"
            raise ValueError(
                "exactly one auth mode is needed: auth_token, username/password (with "
                f"domain_name) or access_key/secret_key; found: {found}"
            )
        if chosen == ["username/password"]:
            _check_login(self, "password")
            if self.iam_endpoint is None and not self.region:
                raise ValueError("password login needs iam_endpoint or region")
        if chosen == ["access_key/secret_key"]:
            _check_login(self, "aksk")

    @property
    def api_url(self) -> str:
        return self.endpoint or f"https://vias.{self.region}.myhuaweicloud.com"

    @property
    def iam_url(self) -> str:
        return self.iam_endpoint or f"https://iam.{self.region}.myhuaweicloud.com"

    @property
    def auth_mode(self) -> Literal["token", "password", "aksk"]:
        if self.auth_token is not None:
            return "token"
        return "password" if self.username is not None else "aksk"


class GlobalConfig(BaseModel):
    """Settings shared by every target: validated once, then passed down as they are."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_age_intervals: float = Field(default=3.0, gt=0)
    problem_tasks_limit: int = Field(default=200, ge=0)
    # Batch tasks per project with series of their own, the most urgent kept (a safety net).
    batch_task_series_limit: int = Field(default=1000, ge=0)
    # Longer label values from the API are cut to this (ending in … and a hash), counted.
    label_value_max_bytes: int = Field(default=DEFAULT_LABEL_VALUE_MAX_BYTES, ge=64)
    request_timeout_seconds: float = Field(default=15.0, gt=0)
    # An answer body longer than this fails the poll (`bad_response`) unread past it.
    max_response_bytes: int = Field(default=DEFAULT_MAX_RESPONSE_BYTES, ge=64 << 10)
    max_retries: int = Field(default=3, ge=0, le=10)
    backoff_initial_seconds: float = Field(default=0.5, gt=0)
    backoff_max_seconds: float = Field(default=30.0, gt=0)
    # After refused credentials no request for this long, doubling up to the maximum:
    # Huawei locks an account or key after 5 failed authentications in a row.
    auth_backoff_seconds: float = Field(default=30.0, ge=0)
    auth_backoff_max_seconds: float = Field(default=600.0, ge=0)
    # Requests/s to VIAS for all targets sharing credentials (scope `project`: for each),
    # split among shards; intervals stretch when the sources ask for more (budget.py).
    rate_limit_per_second: float = Field(default=20.0, gt=0)
    # Polls of one account running at once on a replica; the others wait holding nothing.
    # Default: half the replica's budget in requests/s, at least 4 (20/s: 10).
    max_polls_in_flight: int | None = Field(default=None, ge=1, le=1024)
    rate_limit_scope: Literal["account", "project"] = "account"
    max_concurrency: int = Field(default=4, ge=1, le=64)
    page_window: int = Field(default=4, ge=1, le=64)
    max_pages: int = Field(default=10_000, ge=1)
    # Job detail calls a poll may make for the error codes of named problem jobs of the
    # lists without `error` (infer_tasks, face_edge_tasks); each job costs one call.
    detail_calls_per_poll: int = Field(default=20, ge=0)
    verify_tls: bool = True
    ca_file: Path | None = None
    proxy: HttpUrlText = None

    @field_validator("ca_file")
    @classmethod
    def _ca_readable(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError("CA bundle file not found")
        return path


DEFAULT_IAM_ENDPOINT = "https://iam.myhuaweicloud.com"
_REGION_PLACEHOLDER = "{region}"


def _endpoint_template(raw: object) -> str | None:
    """An http(s) URL that may hold `{region}`, kept as text without a trailing slash."""
    if raw is None or raw == "":
        return None
    text = str(raw).strip().rstrip("/")
    rest = text.replace(_REGION_PLACEHOLDER, "")
    if "{" in rest or "}" in rest:
        raise ValueError("the only placeholder an endpoint may hold is {region}")
    _http_url(text.replace(_REGION_PLACEHOLDER, "cn-north-4"))  # a URL once filled in
    return text


class DiscoveryConfig(BaseModel):
    """Every project of an account, found through IAM and polled as a target: which
    projects (regions, name patterns), how often to look, and the template of the targets."""

    model_config = ConfigDict(extra="forbid")

    iam_endpoint: HttpUrlText = DEFAULT_IAM_ENDPOINT
    # AK/SK: GET /v3/projects (paged; needs the IAM permission to list projects). The
    # account's id, when given, narrows the listing (`domain_id`) and is sent as X-Domain-Id.
    access_key: str | None = None
    secret_key: SecretStr | None = None
    secret_key_file: SecretFile = None
    domain_id: str | None = None
    # Password login: GET /v3/auth/projects (the projects this user may access) with a
    # domain-scoped token; each discovered target then logs in to its own project.
    username: str | None = None
    password: SecretStr | None = None
    password_file: SecretFile = None
    domain_name: str | None = None
    # VIAS regions to watch: a project's region is its name, or the part before the first `_`.
    regions: Annotated[list[str], Field(min_length=1)]
    # Regexes matching whole project names (as in Prometheus relabelling): a project is kept
    # if any `include` matches (or there is none) and no `exclude` does.
    include: list[re.Pattern[str]] = Field(default_factory=list)
    exclude: list[re.Pattern[str]] = Field(default_factory=list)
    refresh_interval_seconds: float = Field(default=300.0, gt=0)
    # No wanted project listed, after some were: believed once answers in a row have said
    # so this long (two at least); until then they are kept, the refresh fails (`empty`).
    empty_confirmation_seconds: float = Field(default=600.0, ge=0)
    # The targets it makes: the VIAS endpoint (default https://vias.{region}.myhuaweicloud.com;
    # `{region}` is replaced by the project's region), sources and intervals.
    endpoint: Annotated[str | None, BeforeValidator(_endpoint_template)] = None
    sources: Annotated[Sources, Field(min_length=1)]  # left out: the registry's defaults
    account_name: AccountName = None
    poll_interval_seconds: float = Field(default=60.0, gt=0)
    poll_intervals: dict[Source, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any, info: ValidationInfo) -> Any:
        return default_sources(data, info)

    @field_validator("regions")
    @classmethod
    def _plain_regions(cls, regions: list[str]) -> list[str]:
        if any(not region or "_" in region for region in regions):
            raise ValueError("a region is a name such as cn-north-4, without `_`")
        return list(dict.fromkeys(regions))

    @model_validator(mode="after")
    def _complete(self) -> DiscoveryConfig:
        read_secret_files(self, "password", "secret_key")
        aksk = self.access_key is not None or self.secret_key is not None
        password = self.username is not None or self.password is not None
        if aksk == password:
            found = "both" if aksk else "none"
            raise ValueError(
                "discovery needs exactly one auth mode: access_key/secret_key or "
                f"username/password (with domain_name); found: {found}"
            )
        _check_login(self, "aksk" if aksk else "password")
        return self

    @property
    def auth_mode(self) -> Literal["password", "aksk"]:
        return "password" if self.username is not None else "aksk"

    def api_url(self, region: str) -> str:
        """The VIAS endpoint of a discovered project in `region`."""
        if self.endpoint is None:
            return f"https://vias.{region}.myhuaweicloud.com"
        return self.endpoint.replace(_REGION_PLACEHOLDER, region)


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    global_: GlobalConfig = Field(default_factory=GlobalConfig, alias="global")
    discovery: DiscoveryConfig | None = None
    targets: list[TargetConfig] = Field(default_factory=list, validate_default=True)

    @field_validator("targets")
    @classmethod
    def _something_to_poll(
        cls, targets: list[TargetConfig], info: ValidationInfo
    ) -> list[TargetConfig]:
        # `discovery` is missing from info.data only when it is invalid (reported there).
        if not targets and "discovery" in info.data and info.data["discovery"] is None:
            raise ValueError("List should have at least 1 item, or a discovery section")
        return targets

    @model_validator(mode="after")
    def _unique_targets(self) -> Config:
        # By id alone: series are keyed by it (two spellings of an endpoint: one set).
        ids = [target.project_id for target in self.targets]
        duplicates = sorted({project_id for project_id in ids if ids.count(project_id) > 1})
        if duplicates:
            raise ValueError(f"project listed twice: {', '.join(duplicates)}")
        return self


class _EnvTarget(BaseSettings, TargetConfig):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")


class _EnvGlobal(BaseSettings, GlobalConfig):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")


def _describe(error: ValidationError, *, env: bool) -> str:
    """One line per problem, naming the field; the offending value is never shown."""
    lines = []
    for problem in error.errors(include_input=False, include_url=False):
        parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in problem["loc"]]
        where = "".join(parts).lstrip(".")
        if env and where:
            where = ENV_PREFIX + where.upper()
        message = problem["msg"].removeprefix("Value error, ")
        if env:
            message = _FIELD_NAMES.sub(lambda m: ENV_PREFIX + m.group(0).upper(), message)
        lines.append(f"{where}: {message}" if where else message)
    return "\n".join(lines)


# Field names inside messages, as whole words: in environment mode they become variables.
_FIELD_NAMES = re.compile(
    r"(?<![\w.])("
    + "|".join(sorted({*TargetConfig.model_fields, *GlobalConfig.model_fields}, key=len)[::-1])
    + r")(?![\w])"
)


def load_config(config_file: Path | None, lists: ListChoices) -> Config:
    """The configuration from `config_file`, or from VIAS_* variables when none is given;
    `lists` are the lists it may name (`exporter.lists.REGISTRY`)."""
    if config_file is not None:
        try:
            return Config.model_validate(_read_yaml(config_file), context=lists)
        except ValidationError as error:
            raise ConfigError(f"{config_file}:\n{_describe(error, env=False)}") from None
    try:
        # The variables read as `BaseSettings` reads them, validated with the lists given.
        target = TargetConfig.model_validate(EnvSettingsSource(_EnvTarget)(), context=lists)
        global_config = _EnvGlobal()
    except ValidationError as error:
        raise ConfigError(_describe(error, env=True)) from None
    except SettingsError as error:  # a variable that is not the JSON its field needs
        raise ConfigError(env_value_problem(error, ENV_PREFIX)) from None
    # Already validated: construct without validating (and reading secret files) twice.
    return Config.model_construct(global_=global_config, targets=[target])


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: {yaml_problem(error)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with `targets` at the top")
    return data
