"""How fast an account's requests go: the budget that follows the API gateway, the rate
limiter every request passes, the count of a poll's requests, and the slots that bound an
account's polls in flight (the plan that uses them: `exporter.budget`).

The budget follows the gateway: a 429 halves it (once per DECREASE_HOLD_SECONDS: a burst
of 429s is one congestion event) and silences the account for a second, and it grows back
by a small step a second up to the configured value (additive increase, multiplicative
decrease). Huawei's rate-limit headers (`X-Apig-RateLimit-*`:
`remain:199,limit:200,time:1 second`) lower its ceiling when an answer carries them;
nothing relies on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextvars import ContextVar

DECREASE_FACTOR = 0.5
DECREASE_HOLD_SECONDS = 2.0
INCREASE_PER_SECOND = 0.005  # of the configured budget: 200/s grows back by 1/s a second
FLOOR_FRACTION = 0.02  # the budget never goes below this fraction of the configured one


_PERIODS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
_RATE_LIMIT = re.compile(
    r"limit:\s*(\d+(?:\.\d+)?).*?time:\s*(\d+(?:\.\d+)?)?\s*(second|minute|hour|day)", re.I
)
RATE_LIMIT_HEADERS = (
    "X-Apig-RateLimit-api",
    "X-Apig-RateLimit-user",
    "X-Apig-RateLimit-app",
    "X-Apig-RateLimit-ip",
    "X-Apig-RateLimit-api-allenv",
)


def gateway_rate_limit(headers: Mapping[str, str]) -> float | None:
    """The tightest requests/s of the `X-Apig-RateLimit-*` headers an answer carries, or
    None (none there, or none readable: they are never relied on)."""
    rates = []
    for name in RATE_LIMIT_HEADERS:
        match = _RATE_LIMIT.search(headers.get(name, "")[:200])
        if match is not None:
            limit, count, unit = match.groups()
            seconds = float(count or 1) * _PERIODS[unit.lower()]
            if seconds > 0 and float(limit) > 0:
                rates.append(float(limit) / seconds)
    return min(rates, default=None)


class AimdBudget:
    """Requests a second this replica may send for one account: the configured share,
    halved on a 429, grown back by INCREASE_PER_SECOND of it a second."""

    def __init__(
        self, configured: float, shards: int = 1, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.shards = shards
        self.configured = configured / shards
        self._ceiling = self.configured
        self._rate = self.configured
        self._clock = clock
        self._at = clock()
        self._last_decrease = -math.inf
        self.decreases = 0

    @property
    def last_rate(self) -> float:
        """The rate as last computed (by a request or a plan): what /metrics shows, so that
        it moves only with what moves the exporter's own metrics."""
        return self._rate

    @property
    def rate(self) -> float:
        now = self._clock()
        step = INCREASE_PER_SECOND * self.configured * max(0.0, now - self._at)
        self._rate = min(self._ceiling, self._rate + step)
        self._at = now
        return self._rate

    def throttled(self) -> bool:
        """A 429: halve the budget, unless it was halved moments ago (True when it was)."""
        rate, now = self.rate, self._clock()
        if now - self._last_decrease < DECREASE_HOLD_SECONDS:
            return False
        self._rate = max(FLOOR_FRACTION * self.configured, rate * DECREASE_FACTOR)
        self._last_decrease = now
        self.decreases += 1
        return True

    def gateway_limit(self, account_rate: float) -> None:
        """The gateway says the account may send `account_rate` a second (all shards)."""
        self._ceiling = min(self.configured, account_rate / self.shards)
        self._rate = min(self._rate, self._ceiling)


_POLL_REQUESTS: ContextVar[list[int] | None] = ContextVar("poll_requests", default=None)


@contextlib.contextmanager
def counting_requests() -> Iterator[list[int]]:
    """Counts the requests sent through a `RateLimiter` in this context (a poll's tasks
    included): `counter[0]`."""
    counter = [0]
    token = _POLL_REQUESTS.set(counter)
    try:
        yield counter
    finally:
        _POLL_REQUESTS.reset(token)


class RateLimiter:
    """A token bucket at the budget's rate (one second of burst), served in arrival order.
    Not aiolimiter's: its rate is fixed when made, and this one follows the AIMD budget at
    every request (and counts what it let through for the plan)."""

    def __init__(self, budget: AimdBudget, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget
        self._clock = clock
        self._tokens = budget.rate
        self._at = clock()
        self._lock = asyncio.Lock()
        self.sent = 0
        self.throttled = 0

    async def acquire(self) -> None:
        counter = _POLL_REQUESTS.get()
        if counter is not None:
            counter[0] += 1
        async with self._lock:
            while True:
                rate = self.budget.rate
                now = self._clock()
                self._tokens = min(max(1.0, rate), self._tokens + (now - self._at) * rate)
                self._at = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    self.sent += 1
                    return
                await asyncio.sleep((1.0 - self._tokens) / rate)

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """What an answer says about the budget: a 429 lowers it, and so do the gateway's
        rate-limit headers when they come."""
        if status == 429:
            self.throttled += 1
            if self.budget.throttled():
                # A second of silence: the gateway's window (`time:1 second`) empties, and
                # the requests it still counts are not refused again at the new rate.
                self._tokens = -self.budget.rate
        limit = gateway_rate_limit(headers)
        if limit is not None:
            self.budget.gateway_limit(limit)


class PollSlots:
    """At most `size` polls of an account at once; waiting polls are let in by priority,
    then in arrival order. A waiting poll has sent nothing and holds no pages."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.busy = 0
        self.peak = 0
        self.waiting = 0
        self._queue: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    @contextlib.asynccontextmanager
    async def slot(self, priority: int) -> AsyncIterator[None]:
        await self._acquire(priority)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, priority: int) -> None:
        if self.busy < self.size and not self.waiting:
            self.busy += 1
            self.peak = max(self.peak, self.busy)
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._queue, (priority, next(self._arrivals), future))
        self.waiting += 1
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release()  # handed a slot while being cancelled: pass it on
            else:
                self.waiting -= 1
                future.cancel()  # left in the queue, skipped when it comes up
            raise

    def _release(self) -> None:
        while self._queue:
            *_, future = heapq.heappop(self._queue)
            if not future.done():
                self.waiting -= 1
                future.set_result(None)  # the slot goes to it: `busy` stays
                return
        self.busy -= 1
