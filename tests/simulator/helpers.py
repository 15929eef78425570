"""Helpers for the simulator's own tests: a small world and a client for it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from exporter.simulator import Scenario, Simulator, World

TOKEN = "sim-token-test"
DOMAIN, USER, PASSWORD = "acme", "ops", "pa55"
ACCESS_KEY, SECRET_KEY = "AKTEST0001", "sk-test-0123"


@dataclass
class Reply:
    status: int
    body: bytes
    headers: CIMultiDictProxy[str]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Live:
    """A running simulator and a client session to call it with."""

    sim: Simulator
    url: str
    http: aiohttp.ClientSession

    @property
    def world(self) -> World:
        return self.sim.world

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = TOKEN,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> Reply:
        sent = {**({"X-Auth-Token": token} if token else {}), **(headers or {})}
        async with self.http.request(
            method, self.url + path, params=params, headers=sent, json=body
        ) as response:
            return Reply(response.status, await response.read(), response.headers)

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.call("GET", path, **kwargs)


def small_world(scenario: Scenario = "demo", seed: int = 3) -> World:
    return World.generate(
        seed=seed,
        project_ids=["p1", "p2"],
        tasks_per_project=120,
        batch_tasks_per_project=3,
        face_edge_tasks_per_project=25,
        scenario=scenario,
    )


def make_sim(world: World, **options: Any) -> Simulator:
    return Simulator(
        world,
        token=TOKEN,
        iam_users={(DOMAIN, USER): PASSWORD},
        access_keys={ACCESS_KEY: SECRET_KEY},
        **options,
    )
