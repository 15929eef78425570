"""The VIAS double's HTTP side: the five task APIs, IAM login, auth, faults, admin API."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import secrets
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from aiohttp import web

from exporter.signing import verify_request
from exporter.simulator.faults import Fault, FaultSet
from exporter.simulator.world import ProjectData, SimBatchTask, SimFaceEdgeTask, SimTask, World

AuthKind = Literal["token", "aksk", "none"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Json = dict[str, Any]

RATE_LIMIT_PER_SECOND = 200  # the gateway's documented default per API
FACE_EDGE_MAX_PAGE_SIZE = 100  # undocumented upstream; our choice
_MAX_PAGE = 1_000_000
_AUTH_MESSAGES = {
    "missing": "AK/SK signature headers are missing",
    "unknown_key": "the access key does not exist",
    "bad_signature": "verify aksk signature fail",
    "clock_skew": "the request date differs from the server's by more than 15 minutes",
    "token": "the token is missing, expired or not valid for this project",
    "project": "X-Project-Id does not match the project in the URL",
}
_GATEWAY_PAGE = (
    "<html>\r\n<head><title>{status} Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>{status} Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_DEFAULT_WRONG_SHAPE = {"count": "many", "tasks": "oops", "batch_task_list": "oops"}


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


class ApiError(Exception):
    """An error answer: `status` with a JSON `body` (the request id is added)."""

    def __init__(self, status: int, body: Json) -> None:
        super().__init__(body.get("error_msg"))
        self.status, self.body = status, body


def vias_error(status: int, code: str, message: str, detail: str, params: list[str]) -> ApiError:
    return ApiError(
        status,
        {
            "error_code": code,
            "error_msg": message,
            "detail": detail,
            "params": params,
            "reason": detail,
            "advice": "Check the request parameters and try again.",
        },
    )


def gateway_error(status: int, code: str, message: str) -> ApiError:
    return ApiError(status, {"error_code": code, "error_msg": message})


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
        self.requests: list[RequestRecord] = []
        self.in_flight = 0  # API requests received and not answered yet
        self.peak_in_flight = 0  # the most that ever were at once
        self._tokens: dict[str, _IssuedToken] = {}
        self._rate = _RateWindow()
        # per (project, format): task id -> (the SimTask rendered, its JSON); ProjectData
        # replaces a SimTask on every change, so identity tells whether the JSON is current
        self._rendered: dict[tuple[str, str], dict[str, tuple[SimTask, str]]] = {}

    def now(self) -> datetime:
        """The simulator's clock: real time shifted by `clock_offset`."""
        return datetime.now(UTC) + self.clock_offset

    def expire_tokens(self) -> None:
        """Every IAM token issued so far is refused from now on (the static token is not)."""
        for issued in self._tokens.values():
            issued.expires_at = datetime.min.replace(tzinfo=UTC)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/v2/{project_id}/tasks", self._tasks_v2)
        app.router.add_get("/v2/{project_id}/batch-tasks", self._batch_tasks)
        app.router.add_get("/v1/{project_id}/infer/tasks", self._tasks_v1)
        app.router.add_get("/v1/{project_id}/infer/tasks/{task_id}", self._task_v1)
        app.router.add_get("/v2/{project_id}/services/c-face-edge/tasks", self._face_edge)
        app.router.add_post("/v3/auth/tokens", self._login)
        app.router.add_post("/_sim/step", self._admin_step)
        app.router.add_get("/_sim/faults", self._admin_faults)
        app.router.add_post("/_sim/faults", self._admin_add_faults)
        app.router.add_delete("/_sim/faults", self._admin_clear_faults)
        app.router.add_post("/_sim/expire-tokens", self._admin_expire_tokens)
        app.router.add_get("/_sim/truth/{project_id}", self._admin_truth)
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
            _auth_kind(request),
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
            return await _stalled(request, response, fault.seconds)
        return response

    async def _answer(
        self, request: web.Request, handler: Handler, request_id: str, fault: Fault | None
    ) -> web.StreamResponse:
        replacement = _fault_answer(fault, request_id) if fault else None
        if replacement is not None:
            return replacement
        refusal = await self._refusal(request)
        if refusal is not None:
            return _error_response(refusal, request_id)
        request["first_page_only"] = fault is not None and fault.kind == "repeat_page"
        response = await _dispatch(request, handler, request_id)
        return _truncated(response) if fault is not None and fault.kind == "cut_json" else response

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
        if request.path == "/v3/auth/tokens":
            return None
        project_id = request.match_info.get("project_id")
        reason = None
        if "X-Auth-Token" in request.headers:
            if not self._token_ok(request.headers["X-Auth-Token"], project_id):
                reason = "token"
        elif "Authorization" in request.headers:
            reason = await self._signature_problem(request, project_id)
        else:
            reason = "token"
        if reason is None:
            return None
        message = f"Incorrect IAM authentication information: {_AUTH_MESSAGES[reason]}"
        return gateway_error(401, "APIGW.0301", message)

    def _token_ok(self, token: str, project_id: str | None) -> bool:
        if self.token is not None and _same(token, self.token):
            return True
        issued = self._tokens.get(token)
        return (
            issued is not None
            and issued.project_id == project_id
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

    # --- VIAS task APIs ---

    async def _tasks_v2(self, request: web.Request) -> web.Response:
        return self._task_listing(request, "v2", 1000, _task_v2)

    async def _tasks_v1(self, request: web.Request) -> web.Response:
        return self._task_listing(request, "v1", 50, _task_v1_item)

    def _task_listing(
        self,
        request: web.Request,
        fmt: str,
        max_size: int,
        render: Callable[[SimTask, str], Json],
    ) -> web.Response:
        """/v2/tasks and /v1/infer/tasks: same jobs, `count` = items on this page."""
        project = self._project(request)
        page, size = _paging(request, "page", max_size)
        tasks = project.newest_first((page - 1) * size, page * size)
        items = self._render(project, fmt, tasks, render)
        return _raw_json(
            f'{{"count":{len(tasks)},"tasks":[{items}],"page":{page},"page_size":{size}}}'
        )

    async def _task_v1(self, request: web.Request) -> web.Response:
        project = self._project(request)
        task = project.tasks.get(request.match_info["task_id"])
        if task is None:
            raise vias_error(
                404,
                "VIAS.00010002",
                "The task does not exist.",
                f"task {request.match_info['task_id']} not found",
                ["task_id"],
            )
        return _json(200, _task_v1_detail(task, project.project_id))

    async def _batch_tasks(self, request: web.Request) -> web.Response:
        project = self._project(request)
        batches = sorted(
            project.batch_tasks.values(), key=lambda b: (b.created_at_ms, b.id), reverse=True
        )
        page, size = _paging(request, "page_num", 200, max_page=10000)
        if request.query.get("is_paged", "true").lower() != "false":
            batches = batches[(page - 1) * size : page * size]
        listing = [_batch_task(batch) for batch in batches]
        return _json(200, {"count": len(project.batch_tasks), "batch_task_list": listing})

    async def _face_edge(self, request: web.Request) -> web.Response:
        project = self._project(request)
        jobs = list(project.face_edge_tasks.values())
        if self.face_edge_paging:
            page, size = _paging(request, "page", FACE_EDGE_MAX_PAGE_SIZE, min_size=1)
            jobs = jobs[(page - 1) * size : page * size]
        tasks = [_face_edge_task(job, project.project_id) for job in jobs]
        return _json(200, {"count": len(project.face_edge_tasks), "tasks": tasks})

    def _project(self, request: web.Request) -> ProjectData:
        project_id = request.match_info["project_id"]
        project = self.world.projects.get(project_id)
        if project is None:
            raise gateway_error(404, "APIGW.0101", f"The project {project_id} does not exist")
        return project

    def _render(
        self,
        project: ProjectData,
        fmt: str,
        tasks: list[SimTask],
        render: Callable[[SimTask, str], Json],
    ) -> str:
        """Comma-joined JSON of `tasks`, reusing each job's JSON until the job changes."""
        cache = self._rendered.setdefault((project.project_id, fmt), {})
        if len(cache) > 2 * len(project.tasks) + 1000:  # forget deleted jobs now and then
            for task_id in [i for i in cache if i not in project.tasks]:
                del cache[task_id]
        parts = []
        for task in tasks:
            hit = cache.get(task.id)
            if hit is None or hit[0] is not task:
                hit = (task, json.dumps(render(task, project.project_id), separators=(",", ":")))
                cache[task.id] = hit
            parts.append(hit[1])
        return ",".join(parts)

    # --- IAM ---

    async def _login(self, request: web.Request) -> web.Response:
        try:
            auth = (await request.json())["auth"]
            user = auth["identity"]["password"]["user"]
            name, password, domain = user["name"], user["password"], user["domain"]["name"]
            project_id = auth.get("scope", {}).get("project", {}).get("id")
        except (ValueError, KeyError, TypeError, AttributeError):
            return _iam_error(400, "Bad Request", "The request body is not a valid password login.")
        expected = self.iam_users.get((domain, name))
        if expected is None or not _same(expected, str(password)):
            return _iam_error(401, "Unauthorized", "The username or password is wrong.")
        token = f"MIIsim{secrets.token_hex(32)}"
        issued_at = self.now()
        self._tokens[token] = _IssuedToken(project_id, issued_at + self.token_ttl)
        body = {
            "token": {
                "expires_at": _iam_time(issued_at + self.token_ttl),
                "issued_at": _iam_time(issued_at),
                "methods": ["password"],
                "user": {"name": name, "domain": {"name": domain}},
                "project": {"id": project_id, "name": project_id} if project_id else None,
            }
        }
        response = _json(201, body)
        response.headers["X-Subject-Token"] = token
        return response

    # --- admin API (no auth, not recorded) ---

    async def _admin_step(self, request: web.Request) -> web.Response:
        self.world.step()
        return _json(200, {"ticks": self.world.ticks, "now_ms": self.world.now_ms})

    async def _admin_faults(self, request: web.Request) -> web.Response:
        return _json(200, {"faults": [fault.to_json() for fault in self.faults.active()]})

    async def _admin_add_faults(self, request: web.Request) -> web.Response:
        try:
            faults = [Fault.from_json(item) for item in await request.json()]
        except (ValueError, TypeError) as error:
            raise gateway_error(400, "SIM.0001", f"bad fault list: {error}") from error
        self.faults.add(*faults)
        return await self._admin_faults(request)

    async def _admin_clear_faults(self, request: web.Request) -> web.Response:
        self.faults.clear()
        return await self._admin_faults(request)

    async def _admin_expire_tokens(self, request: web.Request) -> web.Response:
        self.expire_tokens()
        return _json(200, {"expired": len(self._tokens)})

    async def _admin_truth(self, request: web.Request) -> web.Response:
        return _json(200, self._project(request).truth())


@contextlib.asynccontextmanager
async def run_simulator(
    sim: Simulator, host: str = "127.0.0.1", port: int = 0, step_interval: float = 0.0
) -> AsyncIterator[str]:
    """Serve `sim` on host:port (0: a free port), yielding its base URL (also IAM's);
    with `step_interval` > 0 the world steps every that many seconds."""
    # handler_cancellation: a client that gives up on a stalled body frees its handler
    runner = web.AppRunner(
        sim.app(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0
    )
    await runner.setup()
    stepper = None
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1]
        if step_interval > 0:
            stepper = asyncio.create_task(_step_every(sim.world, step_interval))
        yield f"http://{host}:{bound_port}"
    finally:
        if stepper is not None:
            stepper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stepper
        await runner.cleanup()


async def _step_every(world: World, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        world.step()


# --- helpers: responses ---


async def _dispatch(request: web.Request, handler: Handler, request_id: str) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return _error_response(error, request_id)
    except web.HTTPNotFound:
        return _error_response(
            gateway_error(404, "APIGW.0101", "The API does not exist or has not been published"),
            request_id,
        )


def _json(status: int, body: Any) -> web.Response:
    return _raw_json(json.dumps(body, separators=(",", ":")), status)


def _raw_json(text: str, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=text.encode(), content_type="application/json", charset="utf-8"
    )


def _error_response(error: ApiError, request_id: str) -> web.Response:
    return _json(error.status, {**error.body, "request_id": request_id})


def _iam_error(status: int, title: str, message: str) -> web.Response:
    return _json(status, {"error": {"code": status, "title": title, "message": message}})


def _fault_answer(fault: Fault, request_id: str) -> web.Response | None:
    """The answer a fault puts in place of the real one, or None if it changes that."""
    match fault.kind:
        case "server_error_html":
            page = _GATEWAY_PAGE.format(status=fault.status)
            return web.Response(status=fault.status, text=page, content_type="text/html")
        case "server_error_json":
            return _error_response(
                vias_error(500, "VIAS.00010006", "Internal error.", "internal error", []),
                request_id,
            )
        case "throttle":
            error = gateway_error(
                429,
                "APIGW.0308",
                "The throttling threshold has been reached: policy user over ratelimit,"
                f"limit:{RATE_LIMIT_PER_SECOND},time:1 second",
            )
            response = _error_response(error, request_id)
            if fault.retry_after is not None:
                response.headers["Retry-After"] = f"{fault.retry_after:g}"
            return response
        case "unauthorized":
            message = "Incorrect IAM authentication information: the token has expired"
            return _error_response(gateway_error(401, "APIGW.0301", message), request_id)
        case "wrong_shape":
            return _json(200, _DEFAULT_WRONG_SHAPE if fault.body is None else fault.body)
    return None


def _truncated(response: web.StreamResponse) -> web.StreamResponse:
    if not isinstance(response, web.Response) or not isinstance(response.body, bytes):
        return response
    body = response.body
    return web.Response(
        status=response.status, body=body[: len(body) // 2], content_type="application/json"
    )


async def _stalled(
    request: web.Request, response: web.Response, seconds: float
) -> web.StreamResponse:
    """Headers and half the body now, the rest after `seconds`."""
    body = response.body if isinstance(response.body, bytes) else b""
    stream = web.StreamResponse(status=response.status, headers=response.headers)
    stream.content_length = len(body)
    await stream.prepare(request)
    await stream.write(body[: len(body) // 2])
    await asyncio.sleep(seconds)
    await stream.write(body[len(body) // 2 :])
    await stream.write_eof()
    return stream


def _paging(
    request: web.Request,
    page_name: str,
    max_size: int,
    *,
    min_size: int = 5,
    max_page: int = _MAX_PAGE,
) -> tuple[int, int]:
    """(page, page_size) from the query, 400 when out of range; page 1 under `repeat_page`."""
    page = _int_param(request, page_name, 1, 1, max_page)
    size = _int_param(request, "page_size", 10, min_size, max_size)
    return (1 if request.get("first_page_only") else page), size


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise vias_error(
            400,
            "VIAS.00010001",
            "Invalid parameter.",
            f"{name} must be an integer between {low} and {high}, got {raw!r}",
            [name],
        )
    return value


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _auth_kind(request: web.Request) -> AuthKind:
    if "X-Auth-Token" in request.headers:
        return "token"
    return "aksk" if "Authorization" in request.headers else "none"


def _iam_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- helpers: JSON shapes ---


def _type_code(task: SimTask | SimBatchTask) -> str:
    return "0" if task.deployment == "cloud" else "1"


def _task_common(task: SimTask, project_id: str) -> Json:
    return {
        "id": task.id,
        "name": task.name,
        "creator": "vias-simulator",
        "project_id": project_id,
        "description": f"{task.algorithm} on {task.video_group}",
        "created_at": str(task.created_at_ms),
        "updated_at": str(task.updated_at_ms),
        "state": task.state,
        "status": task.error_message or "",
        "schedule_status": "INACTIVATED",
        "input": {
            "type": "vcn" if task.deployment == "cloud" else "edgecamera",
            "data": [{"id": f"cam-{task.id[:12]}", "index": 0}],
        },
        "output": {"webhook": {"url": "https://hooks.example.com/vias", "headers": {}}},
        "video_source_name": f"camera-{task.id[:6]}",
        "title": task.algorithm,
        "group_name": task.video_group,
        "company": task.vendor,
    }


def _task_v2(task: SimTask, project_id: str) -> Json:
    """/v2 TaskInfoDto: `type` as "0"/"1"; `error` only on jobs that have one."""
    body = _task_common(task, project_id)
    body["service_id"] = f"svc-{task.algorithm}"
    body["type"] = _type_code(task)
    if task.error_code is not None:
        body["error"] = {"code": task.error_code, "message": task.error_message}
    return body


def _task_v1_item(task: SimTask, project_id: str) -> Json:
    return {
        "id": task.id,
        "name": task.name,
        "created_at": str(task.created_at_ms),
        "state": task.state,
        "video_source_name": f"camera-{task.id[:6]}",
        "title": task.algorithm,
        "company": task.vendor,
        "type": task.deployment,
        "group_name": task.video_group,
    }


def _task_v1_detail(task: SimTask, project_id: str) -> Json:
    """/v1 detail: `type` as "cloud"/"edge"; `error` null on jobs without one."""
    body = _task_common(task, project_id)
    body["type"] = task.deployment
    body["error"] = (
        {"code": task.error_code, "message": task.error_message} if task.error_code else None
    )
    return body


def _batch_task(batch: SimBatchTask) -> Json:
    return {
        "id": batch.id,
        "batch_task_name": batch.name,
        "video_source_name": "",
        "video_group_name": batch.video_group,
        "alg_name": batch.algorithm,
        "company": batch.vendor,
        "type": _type_code(batch),
        "num_task": len(batch.task_ids),
        "created_at": batch.created_at_ms,
        "priority": batch.priority,
        "batch_task_status_info": batch.status_counts(),
    }


def _face_edge_task(job: SimFaceEdgeTask, project_id: str) -> Json:
    return {
        "id": job.id,
        "name": job.name,
        "creator": "vias-simulator",
        "project_id": project_id,
        "description": "",
        "service_version": "1.0",
        "edge_pool_id": job.edge_pool_id,
        "resource_order_id": "",
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "state": job.state,
        "input": {"type": "edgecamera", "data": [{"id": job.camera_id, "index": 0}]},
        "output": {"webhook": {"url": "https://hooks.example.com/face", "headers": {}}},
        "service_config": {"common": {}},
    }
