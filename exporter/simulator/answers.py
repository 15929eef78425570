"""The VIAS double's answers: JSON shapes of jobs, batch tasks and face-edge jobs as each
endpoint spells them, VIAS/API-gateway/IAM error bodies, injected faults, paging bounds."""

from __future__ import annotations

import asyncio
import hmac
import json
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web

from exporter.simulator.faults import Fault
from exporter.simulator.world import (
    ERRORS,
    SimBatchTask,
    SimFaceEdgeTask,
    SimTask,
)

Json = dict[str, Any]
AuthKind = Literal["token", "aksk", "none"]
RATE_LIMIT_PER_SECOND = 200  # the gateway's documented default per API
MAX_PAGE = 1_000_000
_GATEWAY_PAGE = (
    "<html>\r\n<head><title>{status} Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>{status} Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_DEFAULT_WRONG_SHAPE = {"count": "many", "tasks": "oops", "batch_task_list": "oops"}


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


def json_answer(status: int, body: Any) -> web.Response:
    return raw_json_answer(json.dumps(body, separators=(",", ":")), status)


def raw_json_answer(text: str, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=text.encode(), content_type="application/json", charset="utf-8"
    )


def error_answer(error: ApiError, request_id: str) -> web.Response:
    return json_answer(error.status, {**error.body, "request_id": request_id})


def iam_error_answer(status: int, title: str, message: str) -> web.Response:
    return json_answer(status, {"error": {"code": status, "title": title, "message": message}})


def fault_answer(fault: Fault, request_id: str) -> web.Response | None:
    """The answer a fault puts in place of the real one, or None if it changes that."""
    match fault.kind:
        case "server_error_html":
            page = _GATEWAY_PAGE.format(status=fault.status)
            return web.Response(status=fault.status, text=page, content_type="text/html")
        case "server_error_json":
            return error_answer(
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
            response = error_answer(error, request_id)
            if fault.retry_after is not None:
                response.headers["Retry-After"] = f"{fault.retry_after:g}"
            return response
        case "unauthorized":
            message = "Incorrect IAM authentication information: the token has expired"
            return error_answer(gateway_error(401, "APIGW.0301", message), request_id)
        case "wrong_shape":
            return json_answer(200, _DEFAULT_WRONG_SHAPE if fault.body is None else fault.body)
    return None


def truncated(response: web.StreamResponse) -> web.StreamResponse:
    if not isinstance(response, web.Response) or not isinstance(response.body, bytes):
        return response
    body = response.body
    return web.Response(
        status=response.status, body=body[: len(body) // 2], content_type="application/json"
    )


async def stalled(
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


def page_bounds(
    request: web.Request,
    page_name: str,
    max_size: int,
    *,
    min_size: int = 5,
    max_page: int = MAX_PAGE,
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


def same_secret(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def auth_kind(request: web.Request) -> AuthKind:
    if "X-Auth-Token" in request.headers:
        return "token"
    return "aksk" if "Authorization" in request.headers else "none"


def iam_time(moment: datetime) -> str:
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
        "video_source_name": task.camera,
        "title": task.algorithm,
        "group_name": task.video_group,
        "company": task.vendor,
    }


def task_v2(task: SimTask, project_id: str) -> Json:
    """/v2 TaskInfoDto: `type` as "0"/"1"; `error` only on jobs that have one. Its
    `service_id` (`svc-<algorithm>`) is one of the project's algorithm services; a job
    marked `sdk_shape` is listed as the SDK's item is: no `company` and no `title`."""
    body = _task_common(task, project_id)
    body["service_id"] = task.service
    if task.sdk_shape:
        del body["company"], body["title"]
    body["type"] = _type_code(task)
    if task.error_code is not None:
        body["error"] = {"code": task.error_code, "message": task.error_message}
    return body


def task_v1_item(task: SimTask, project_id: str) -> Json:
    return {
        "id": task.id,
        "name": task.name,
        "created_at": str(task.created_at_ms),
        "state": task.state,
        "video_source_name": task.camera,
        "title": task.algorithm,
        "company": task.vendor,
        "type": task.deployment,
        "group_name": task.video_group,
    }


def task_v1_detail(task: SimTask, project_id: str) -> Json:
    """/v1 detail: `type` as "cloud"/"edge"; `error` null on jobs without one."""
    body = _task_common(task, project_id)
    body["type"] = task.deployment
    body["error"] = (
        {"code": task.error_code, "message": task.error_message} if task.error_code else None
    )
    return body


def face_edge_detail(job: SimFaceEdgeTask, project_id: str) -> Json:
    """/v1 detail of an edge face-extraction job: the state's error when it has one."""
    error = ERRORS.get(job.state)
    return {
        **face_edge_task(job, project_id),
        "type": "edge",
        "title": "face_extraction",
        "error": {"code": error[0], "message": error[1]} if error else None,
    }


def batch_task(batch: SimBatchTask) -> Json:
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


def face_edge_task(job: SimFaceEdgeTask, project_id: str) -> Json:
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
