"""The API gateway's flow control: at most `per_second` API requests in any second, the
others answered 429 APIGW.0308, as Huawei's gateway answers a user over its limit.

Off unless set (`--throttle-per-second`, `PUT /_sim/throttle {"per_second": 30}`, or
`GatewayThrottle(30)`): the double otherwise answers every request, however fast.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable

from aiohttp import web

from exporter.simulator.answers import error_answer, gateway_error, json_answer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_NOT_THROTTLED = ("/_sim/", "/v3/")  # the admin API; IAM is a service of its own


class GatewayThrottle:
    """A sliding one-second window of the requests let through."""

    def __init__(
        self, per_second: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_second = per_second
        self.passed = 0
        self.refused = 0
        self._clock = clock
        self._window: deque[float] = deque()

    def refuse(self) -> bool:
        if self.per_second is None:
            return False
        now = self._clock()
        while self._window and self._window[0] <= now - 1.0:
            self._window.popleft()
        if len(self._window) >= self.per_second:
            self.refused += 1
            return True
        self._window.append(now)
        self.passed += 1
        return False

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(_NOT_THROTTLED) or not self.refuse():
            return await handler(request)
        error = gateway_error(
            429,
            "APIGW.0308",
            "The throttling threshold has been reached: policy user over ratelimit,"
            f"limit:{self.per_second:g},time:1 second",
        )
        return error_answer(error, request.headers.get("X-Request-Id", ""))

    def routes(self) -> list[web.RouteDef]:
        async def show(request: web.Request) -> web.Response:
            return json_answer(200, self._state())

        async def put(request: web.Request) -> web.Response:
            body = await request.json()
            value = body.get("per_second") if isinstance(body, dict) else None
            if value is not None and (not isinstance(value, int | float) or value <= 0):
                return json_answer(400, {"error": "per_second: a positive number, or null"})
            self.per_second = None if value is None else float(value)
            return json_answer(200, self._state())

        return [web.get("/_sim/throttle", show), web.put("/_sim/throttle", put)]

    def _state(self) -> dict[str, float | int | None]:
        return {"per_second": self.per_second, "passed": self.passed, "refused": self.refused}
