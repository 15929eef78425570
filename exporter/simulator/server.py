"""The VIAS double's HTTP side: the request pipeline (records, latency, faults, the
gateway's auth), IAM login, and the API handlers registered in `handlers.py`."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from exporter.signing import verify_request
from exporter.simulator import iam, incidents, sources
from exporter.simulator.answers import (
    RATE_LIMIT_PER_SECOND,
    ApiError,
    AuthKind,
    auth_kind,
    error_answer,
    fault_answer,
    gateway_error,
    iam_error_answer,
    iam_time,
    json_answer,
    same_secret,
    stalled,
    truncated,
)
from exporter.simulator.faults import Fault, FaultSet
from exporter.simulator.gateway import GatewayThrottle
from exporter.simulator.handlers import HANDLERS
from exporter.simulator.resources import Resources
from exporter.simulator.world import (
    ProjectData,
    World,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Json = dict[str, Any]

ANY_SCOPE = object()  # token_valid: a token of any scope will do
_AUTH_MESSAGES = {
    "missing": "AK/SK signature headers are missing",
    "unknown_key": "the access key does not exist",
    "bad_signature": "verify aksk signature fail",
    "clock_skew": "the request date differs from the server's by more than 15 minutes",
    "token": "the token is missing, expired or not valid for this project",
    "project": "X-Project-Id does not match the project in the URL",
}


@dataclass(slots=True)
class RequestRecord:
    """One API request as the simulator saw it (admin requests are not recorded):
    `received` is its arrival on `time.monotonic()`; `status` stays 0 while it is in flight,
    and for good when the client gave up on it first."""

    method: str
    path: str
    query: dict[str, str]
    auth: AuthKind
    status: int = 0
    fault: str | None = None
    received: float = 0.0


@dataclass(slots=True)
class _IssuedToken:
    project_id: str | None
    expires_at: datetime


@dataclass(slots=True)
class _RateWindow:
    second: int = 0
    used: Counter[str] = field(default_factory=Counter)


class Simulator:
    """Serves a `World` over HTTP like VIAS behind Huawei's API gateway, plus IAM."""

    def __init__(
        self,
        world: World,
        *,
        token: str | None = "sim-token",
        iam_users: Mapping[tuple[str, str], str] | None = None,
        access_keys: Mapping[str, str] | None = None,
        face_edge_paging: bool = True,
        token_ttl_seconds: float = 86400.0,
        latency_seconds: float = 0.0,
    ) -> None:
        self.world = world
        self.token = token
        self.iam_users = dict(iam_users or {})  # (domain, user) -> password
        self.access_keys = dict(access_keys or {})  # AK -> SK
        self.face_edge_paging = face_edge_paging
        self.token_ttl = timedelta(seconds=token_ttl_seconds)
        self.latency_seconds = latency_seconds
        self.clock_offset = timedelta(0)
        self.faults = FaultSet()
        self.gateway = GatewayThrottle()  # flow control, off until set (gateway.py)
        self.resources = Resources(world)  # algorithm services, edge pools
        self.video_sources = sources.SourceBook(world)  # cameras and video groups (sources.py)
        self.incidents = incidents.Incidents(world, self.video_sources, self.resources)
        self.iam = iam.IamDirectory.for_world(world)  # the account's projects (iam.py)
        self.requests: list[RequestRecord] = []
        self.in_flight = 0  # API requests received and not answered yet
        self.peak_in_flight = 0  # the most that ever were at once
        self._tokens: dict[str, _IssuedToken] = {}
        self._rate = _RateWindow()

    def now(self) -> datetime:
        """The simulator's clock: real time shifted by `clock_offset`."""
        return datetime.now(UTC) + self.clock_offset

    def expire_tokens(self) -> int:
        """Every IAM token issued so far is refused from now on (the static token is not);
        returns how many there are."""
        for issued in self._tokens.values():
            issued.expires_at = datetime.min.replace(tzinfo=UTC)
        return len(self._tokens)

    def app(self) -> web.Application:
        # The gateway's flow control is part of the request pipeline, beside the middleware.
        app = web.Application(middlewares=[self._middleware, self.gateway.middleware])
        app.router.add_post("/v3/auth/tokens", self._login)
        app.router.add_routes(self.gateway.routes())
        for routes in HANDLERS:
            app.router.add_routes(routes(self))
        return app

    # --- request pipeline: record, latency, faults, auth, handler ---

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = uuid.uuid4().hex
        if request.path.startswith("/_sim/"):
            response = await _dispatch(request, handler, request_id)
            response.headers["X-Request-Id"] = request_id
            return response
        record = RequestRecord(
            request.method,
            request.path,
            dict(request.query),
            auth_kind(request),
            received=time.monotonic(),
        )
        self.requests.append(record)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            response = await self._serve(request, handler, request_id, record)
        finally:
            self.in_flight -= 1
        record.status = response.status
        return response

    async def _serve(
        self, request: web.Request, handler: Handler, request_id: str, record: RequestRecord
    ) -> web.StreamResponse:
        delay, fault = self.faults.take(request.path)
        record.fault = fault.kind if fault else None
        if self.latency_seconds + delay > 0:
            await asyncio.sleep(self.latency_seconds + delay)
        response = await self._answer(request, handler, request_id, fault)
        self._decorate(response, request_id, request.path)
        if fault is not None and fault.kind == "slow_body" and isinstance(response, web.Response):
            return await stalled(request, response, fault.seconds)
        return response

    async def _answer(
        self, request: web.Request, handler: Handler, request_id: str, fault: Fault | None
    ) -> web.StreamResponse:
        replacement = fault_answer(fault, request_id) if fault else None
        if replacement is not None:
            return replacement
        refusal = await self._refusal(request)
        if refusal is not None:
            return error_answer(refusal, request_id)
        request["first_page_only"] = fault is not None and fault.kind == "repeat_page"
        response = await _dispatch(request, handler, request_id)
        return truncated(response) if fault is not None and fault.kind == "cut_json" else response

    def _decorate(self, response: web.StreamResponse, request_id: str, path: str) -> None:
        second = int(time.time())
        if second != self._rate.second:
            self._rate = _RateWindow(second)
        self._rate.used[path] += 1
        response.headers["X-Request-Id"] = request_id
        response.headers["X-ratelimit"] = str(RATE_LIMIT_PER_SECOND)
        response.headers["X-ratelimit-used"] = str(self._rate.used[path])
        response.headers["X-ratelimit-window"] = "1 second"

    async def _refusal(self, request: web.Request) -> ApiError | None:
        """Why the gateway refuses this request's credentials, or None."""
        if request.path == "/v3/auth/tokens" or request.path in iam.IAM_PATHS:
            return None  # IAM checks its own callers (iam.py)
        project_id = request.match_info.get("project_id")
        reason = None
        if "X-Auth-Token" in request.headers:
            if not self.token_valid(request.headers["X-Auth-Token"], project_id):
                reason = "token"
        elif "Authorization" in request.headers:
            reason = await self._signature_problem(request, project_id)
        else:
            reason = "token"
        if reason is None:
            return None
        message = f"Incorrect IAM authentication information: {_AUTH_MESSAGES[reason]}"
        return gateway_error(401, "APIGW.0301", message)

    def token_valid(self, token: str, project_id: object = ANY_SCOPE) -> bool:
        """The static token, or an IAM token issued, not expired, and scoped to
        `project_id` (to anything by default: IAM's own calls)."""
        if self.token is not None and same_secret(token, self.token):
            return True
        issued = self._tokens.get(token)
        return (
            issued is not None
            and (project_id is ANY_SCOPE or issued.project_id == project_id)
            and self.now() < issued.expires_at
        )

    async def _signature_problem(self, request: web.Request, project_id: str | None) -> str | None:
        body = await request.read()
        headers = request.headers
        problem = verify_request(
            request.method, request.raw_path, headers, body, self.access_keys.get, self.now()
        )
        if problem is None and headers.get("X-Project-Id", project_id) != project_id:
            problem = "project"
        return problem

    def project(self, request: web.Request) -> ProjectData:
        project_id = request.match_info["project_id"]
        project = self.world.projects.get(project_id)
        if project is None:
            raise gateway_error(404, "APIGW.0101", f"The project {project_id} does not exist")
        return project

    # --- IAM ---

    async def _login(self, request: web.Request) -> web.Response:
        try:
            auth = (await request.json())["auth"]
            user = auth["identity"]["password"]["user"]
            name, password, domain = user["name"], user["password"], user["domain"]["name"]
            project_id = auth.get("scope", {}).get("project", {}).get("id")
        except (ValueError, KeyError, TypeError, AttributeError):
            return iam_error_answer(
                400, "Bad Request", "The request body is not a valid password login."
            )
        expected = self.iam_users.get((domain, name))
        if expected is None or not same_secret(expected, str(password)):
            return iam_error_answer(401, "Unauthorized", "The username or password is wrong.")
        token = f"MIIsim{secrets.token_hex(32)}"
        issued_at = self.now()
        self._tokens[token] = _IssuedToken(project_id, issued_at + self.token_ttl)
        body = {
            "token": {
                "expires_at": iam_time(issued_at + self.token_ttl),
                "issued_at": iam_time(issued_at),
                "methods": ["password"],
                "user": {"name": name, "domain": {"name": domain}},
                "project": {"id": project_id, "name": project_id} if project_id else None,
            }
        }
        response = json_answer(201, body)
        response.headers["X-Subject-Token"] = token
        return response


# --- helpers: responses ---


async def _dispatch(request: web.Request, handler: Handler, request_id: str) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return error_answer(error, request_id)
    except web.HTTPNotFound:
        return error_answer(
            gateway_error(404, "APIGW.0101", "The API does not exist or has not been published"),
            request_id,
        )
