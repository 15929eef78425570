"""Project discovery through IAM: the projects of an account, filtered, turned into targets,
refreshed on an interval.

With AK/SK the account's projects come from `GET {iam}/v3/projects` (signed, paged, needs
the IAM permission to list projects); with a password, from `GET {iam}/v3/auth/projects`
(the projects the user may access) with a domain-scoped token. A project becomes a target
when it is enabled, is not a domain, lies in one of `regions` (its name, or the part before
the first `_`), and its name matches `include` (if any) and no `exclude`. Each target is a
normal `TargetConfig`: AK/SK signs for any project; a password target logs in to its own
project, as a configured one does.

A failed refresh (IAM down, refused, a listing that does not add up) keeps the previous
targets: it is logged, counted in `vias_discovery_refresh_failures_total`, and tried again
sooner than the refresh interval. It never drops a project: only a complete listing does.
Losing every project at once is not believed at first: an answer with none of the wanted
projects, after one with some, fails the refresh (reason `empty`) until answers in a row
have said so for `empty_confirmation_seconds`. A project whose id could leave its place in
a URL path is never made a target (logged, counted in
`vias_discovery_projects_rejected_total`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import structlog
from pydantic import Field

from exporter.auth import AkSkAuth, Auth, CoolDown, IamPasswordAuth
from exporter.config_rules import PROJECT_ID_RULE, valid_project_id
from exporter.errors import ViasError, ViasResponseError
from exporter.lists import REGISTRY
from exporter.models import ApiModel, parse_model
from exporter.own_metrics import DiscoveryMetric
from exporter.settings import DiscoveryConfig, GlobalConfig, TargetConfig
from exporter.telemetry import Telemetry
from exporter.transport import Transport, client_session, client_tls

log = structlog.get_logger(__name__)

AUTH_PROJECTS = "/v3/auth/projects"  # password login: the user's projects, one answer
PROJECTS = "/v3/projects"  # AK/SK: the account's projects, paged
PER_PAGE = 5000  # the most IAM allows
RETRY_FIRST_SECONDS = 15.0  # after a failed refresh, retry this soon, doubling up to the interval
# IAM calls concern the account, not one project: counted with an empty project_id.
ACCOUNT = ""

OnTargets = Callable[[list[TargetConfig]], Awaitable[None]]


class EmptyListing(ViasError):
    """IAM listed none of the wanted projects, when it listed some before: not believed
    until confirmed (`empty_confirmation_seconds`)."""

    reason = "empty"


class IamProject(ApiModel):
    id: str = Field(min_length=1)
    name: str = ""
    enabled: bool = True
    is_domain: bool = False


class ProjectList(ApiModel):
    projects: list[IamProject]


def region_of(project_name: str) -> str:
    """`cn-north-4` for `cn-north-4` and for its sub-project `cn-north-4_video`."""
    return project_name.split("_", 1)[0]


def wanted(project: IamProject, config: DiscoveryConfig) -> bool:
    if not project.enabled or project.is_domain:
        return False
    if region_of(project.name) not in config.regions:
        return False
    if config.include and not any(p.fullmatch(project.name) for p in config.include):
        return False
    return not any(p.fullmatch(project.name) for p in config.exclude)


def target_of(project: IamProject, config: DiscoveryConfig) -> TargetConfig:
    """The target polling `project` with the discovery's credentials and template."""
    region = region_of(project.name)
    fields: dict[str, Any] = {
        "project_id": project.id,
        "region": region,
        "endpoint": config.api_url(region),
        "sources": config.sources,
        "account_name": config.account_name,
        "poll_interval_seconds": config.poll_interval_seconds,
        "poll_intervals": config.poll_intervals,
    }
    if config.auth_mode == "aksk":
        fields |= {"access_key": config.access_key, "secret_key": config.secret_key}
    else:
        fields |= {
            "username": config.username,
            "password": config.password,
            "domain_name": config.domain_name,
            "iam_endpoint": config.iam_endpoint,
        }
    return TargetConfig.model_validate(fields, context=REGISTRY)


def targets_of(projects: Sequence[IamProject], config: DiscoveryConfig) -> list[TargetConfig]:
    """The wanted projects as targets, once each, by project id."""
    chosen = {project.id: project for project in projects if wanted(project, config)}
    return [target_of(chosen[project_id], config) for project_id in sorted(chosen)]


class _DomainPasswordAuth(IamPasswordAuth):
    """A password login scoped to the account (domain), not to a project: what listing the
    user's projects needs."""

    def __init__(self, domain_name: str, **options: Any) -> None:
        super().__init__(domain_name=domain_name, project_id=ACCOUNT, **options)
        self._scope_domain = domain_name

    def _login_body(self) -> bytes:
        body = json.loads(super()._login_body())
        body["auth"]["scope"] = {"domain": {"name": self._scope_domain}}
        return json.dumps(body).encode()


def describe_discovery(config: DiscoveryConfig) -> str:
    """One line for `--check-config`."""
    auth = "AK/SK" if config.auth_mode == "aksk" else f"password login as {config.username}"
    patterns = "".join(
        f", {name} {', '.join(p.pattern for p in patterns)}"
        for name, patterns in (("include", config.include), ("exclude", config.exclude))
        if patterns
    )
    return (
        f"discovery: projects of regions {', '.join(config.regions)}{patterns} from "
        f"{config.iam_endpoint} ({auth}), every {config.refresh_interval_seconds:g}s; "
        f"each polls {','.join(config.sources)} every {config.poll_interval_seconds:g}s"
    )


class Discovery:
    """Lists the account's projects through IAM and turns the wanted ones into targets.
    Use as `async with Discovery(...) as discovery:` (it owns an HTTP session)."""

    def __init__(
        self,
        config: DiscoveryConfig,
        settings: GlobalConfig,
        telemetry: Telemetry,
        *,
        per_page: int = PER_PAGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._settings = settings
        self._telemetry = telemetry
        telemetry.watch_discovery()
        self._per_page = per_page
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._transport: Transport | None = None
        self.targets: list[TargetConfig] | None = None  # the last good refresh's
        self._empty_since: float | None = None  # first of the empty answers in a row
        # Set once the first refresh has been handed to `run`'s caller (or has failed).
        self.settled = asyncio.Event()

    async def __aenter__(self) -> Discovery:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = self._transport = None

    def _the_transport(self) -> Transport:
        if self._transport is None:
            settings = self._settings
            self._session = session = client_session(client_tls(settings), connections=2)
            auth: Auth
            if self.config.auth_mode == "aksk":
                assert self.config.access_key and self.config.secret_key
                auth = AkSkAuth(
                    self.config.access_key,
                    self.config.secret_key,
                    None,  # IAM is global: no project
                    domain_id=self.config.domain_id,
                )
            else:
                assert self.config.username and self.config.password
                assert self.config.domain_name
                auth = _DomainPasswordAuth(
                    self.config.domain_name,
                    session=session,
                    iam_endpoint=self.config.iam_endpoint or "",
                    username=self.config.username,
                    password=self.config.password,
                    telemetry=self._telemetry,
                    timeout_seconds=settings.request_timeout_seconds,
                    proxy=settings.proxy,
                    cool_down=CoolDown.from_settings(settings, clock=time.time),
                )
            self._transport = Transport(
                session=session,
                base_url=self.config.iam_endpoint or "",
                project_id=ACCOUNT,
                auth=auth,
                telemetry=self._telemetry,
                settings=settings,
            )
        return self._transport

    async def projects(self) -> list[IamProject]:
        """Every project IAM lists for these credentials; raises `ViasError` on failure,
        also when the listing does not add up (a page repeated, more than `max_pages`)."""
        transport = self._the_transport()
        if self.config.auth_mode == "password":
            return await transport.get(AUTH_PROJECTS, {}, _parse(AUTH_PROJECTS))
        query = {"domain_id": self.config.domain_id} if self.config.domain_id else {}
        found: dict[str, IamProject] = {}
        for page in range(1, self._settings.max_pages + 1):
            params = {**query, "page": str(page), "per_page": str(self._per_page)}
            listed = await transport.get(PROJECTS, params, _parse(PROJECTS))
            new = {project.id: project for project in listed if project.id not in found}
            if listed and not new:
                raise ViasResponseError(
                    f"{PROJECTS} repeated a page (page {page})", endpoint=PROJECTS
                )
            found |= new
            if len(listed) < self._per_page:
                return list(found.values())
        raise ViasResponseError(
            f"{PROJECTS} still had projects after max_pages pages", endpoint=PROJECTS
        )

    async def refresh(self) -> list[TargetConfig]:
        """The targets of the account's wanted projects, by project id; raises on failure
        (`ViasError`), leaving the previous targets and metrics' projects as they were."""
        targets = targets_of(self._usable(await self.projects()), self.config)
        self._check_not_lost(targets)
        self.targets = targets
        self._telemetry.update(DiscoveryMetric.vias_discovery_projects, value=len(targets))
        self._telemetry.update(DiscoveryMetric.vias_discovery_last_refresh_successful, value=1)
        succeeded_at = DiscoveryMetric.vias_discovery_last_refresh_success_timestamp_seconds
        self._telemetry.update(succeeded_at, value=self._clock())
        return targets

    def _usable(self, projects: list[IamProject]) -> list[IamProject]:
        """The projects whose id may go into a URL path (see `valid_project_id`)."""
        usable = [project for project in projects if valid_project_id(project.id)]
        if rejected := len(projects) - len(usable):
            rejects = DiscoveryMetric.vias_discovery_projects_rejected
            self._telemetry.update(rejects, "invalid_id", value=rejected)
            log.warning("discovered projects ignored", projects=rejected, because=PROJECT_ID_RULE)
        return usable

    def _check_not_lost(self, targets: list[TargetConfig]) -> None:
        """Raise `EmptyListing` while an answer without any wanted project, after one with
        some, is not confirmed: two answers in a row at least, the first at least
        `empty_confirmation_seconds` ago."""
        if targets or not self.targets:
            self._empty_since = None
            return
        now, wait = self._clock(), self.config.empty_confirmation_seconds
        if self._empty_since is None:
            self._empty_since = now
        elif now - self._empty_since >= wait:
            self._empty_since = None
            log.warning(
                "discovery confirmed no wanted projects: every discovered project dropped",
                projects=len(self.targets),
                empty_for_seconds=wait,
            )
            return
        raise EmptyListing(
            f"IAM listed none of the {len(self.targets)} wanted projects it listed before; "
            f"kept until answers say so for {wait:g}s",
            endpoint=PROJECTS if self.config.auth_mode == "aksk" else AUTH_PROJECTS,
        )

    async def refresh_or_keep(self) -> list[TargetConfig] | None:
        """`refresh()`, or None after a failure: logged and counted, never raised."""
        started = time.monotonic()
        try:
            targets = await self.refresh()
        except ViasError as error:
            reason = error.reason
            log.warning("discovery refresh failed", reason=reason, error=str(error))
        except Exception as error:  # a bug must not stop discovery for good
            reason = "internal"
            log.exception("discovery refresh failed", reason=reason, error=repr(error))
        else:
            log.debug(
                "discovery refreshed",
                projects=len(targets),
                seconds=round(time.monotonic() - started, 3),
            )
            return targets
        failures = DiscoveryMetric.vias_discovery_refresh_failures
        self._telemetry.update(failures, reason, value=1)
        self._telemetry.update(DiscoveryMetric.vias_discovery_last_refresh_successful, value=0)
        return None

    async def run(self, on_targets: OnTargets, *, current: Sequence[TargetConfig] = ()) -> None:
        """Refresh every `refresh_interval_seconds` and call `on_targets` with the new list
        whenever it differs from `current` (what the caller has). After a failure the next
        try comes sooner: 15 s, doubling up to the interval."""
        have, failures = list(current), 0
        if self.targets is None and have:  # a new discovery (a reload): what is polled
            self.targets = list(have)
        interval = self.config.refresh_interval_seconds
        while True:
            targets = await self.refresh_or_keep()
            if targets is None:
                self.settled.set()
                failures += 1
                await asyncio.sleep(min(interval, RETRY_FIRST_SECONDS * 2 ** (failures - 1)))
                continue
            failures = 0
            if targets != have:
                _log_change(have, targets)
                try:
                    await on_targets(targets)
                except Exception as error:
                    log.exception("applying discovered targets failed", error=repr(error))
                else:
                    have = targets
            self.settled.set()
            await asyncio.sleep(interval)


def _parse(endpoint: str) -> Callable[[bytes], list[IamProject]]:
    def parse(body: bytes) -> list[IamProject]:
        return parse_model(ProjectList, body, endpoint).projects

    return parse


def _log_change(before: Sequence[TargetConfig], after: Sequence[TargetConfig]) -> None:
    old = {target.project_id for target in before}
    new = {target.project_id for target in after}
    log.info(
        "discovered projects changed",
        projects=len(new),
        added=sorted(new - old),
        removed=sorted(old - new),
    )


def without_static(
    discovered: Sequence[TargetConfig], static: Sequence[TargetConfig]
) -> list[TargetConfig]:
    """A project configured in `targets` is polled as configured, not as discovered."""
    configured = {target.project_id for target in static}
    return [target for target in discovered if target.project_id not in configured]
