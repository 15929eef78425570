"""Sharding across replicas: the consistent hash, what each replica polls, and the flags
through the console script.

| change (tried, seen red) | failing test |
|---|---|
| `project_key` from `hash()` (not the same in two processes) | test_the_shards_..._processes |
| `owns` by `project_key % total` (not consistent) | test_one_more_shard_moves_... |
| the Exporter polls every target whatever its shard | test_a_replica_polls_only_... |
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter.service import Exporter
from exporter.sharding import Sharding, jump_hash, project_key, shard_ordinal
from tests.support import RunningSimulator, make_config, target, telemetry_registry
from tests.test_cli import env_for, run

PROJECTS = [f"{n:032x}" for n in range(2000)]


def owners(total: int) -> dict[str, int]:
    shards = [Sharding(shard, total) for shard in range(total)]
    return {p: next(s.shard for s in shards if s.owns(p)) for p in PROJECTS}


def test_every_project_has_exactly_one_shard_and_the_shards_are_even() -> None:
    for total in (1, 2, 4, 7):
        counts = [0] * total
        for project in PROJECTS:
            owning = [shard for shard in range(total) if Sharding(shard, total).owns(project)]
            assert len(owning) == 1
            counts[owning[0]] += 1
        assert all(
            abs(count - len(PROJECTS) / total) < 0.2 * len(PROJECTS) / total for count in counts
        )


def test_one_more_shard_moves_about_its_share() -> None:
    """4 -> 5 shards: about a fifth of the projects move, all of them to the new shard."""
    before, after = owners(4), owners(5)
    moved = [p for p in PROJECTS if before[p] != after[p]]
    assert 0.15 < len(moved) / len(PROJECTS) < 0.25
    assert {after[p] for p in moved} == {4}


def test_the_shards_of_a_project_agree_across_processes() -> None:
    here = [jump_hash(project_key(p), 5) for p in PROJECTS[:50]]
    code = (
        "from exporter.sharding import jump_hash, project_key\n"
        f"print([jump_hash(project_key(p), 5) for p in {PROJECTS[:50]!r}])"
    )
    there = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert there.strip() == str(here)


@pytest.mark.parametrize(
    ("value", "hostname", "expected"),
    [("2", "anything", 2), ("auto", "vias-exporter-3", 3), ("auto", "vias-exporter-0", 0)],
)
def test_shard_ordinal(value: str, hostname: str, expected: int) -> None:
    assert shard_ordinal(value, hostname) == expected


def test_bad_shards_are_refused() -> None:
    with pytest.raises(ValueError, match="ends in no -<ordinal>"):
        shard_ordinal("auto", "laptop")
    with pytest.raises(ValueError, match="shard 3 is not one of 3 shard"):
        Sharding(3, 3)


async def test_a_replica_polls_only_its_projects(simulator: RunningSimulator) -> None:
    projects = ["p1", "p2"]
    config = make_config([target(simulator.url, p, sources=["tasks"]) for p in projects])
    mine = {p: next(s for s in range(2) if Sharding(s, 2).owns(p)) for p in projects}
    for shard in range(2):
        async with Exporter(config, sharding=Sharding(shard, 2)) as exporter:
            await exporter.poll_all_once()
            polled = {poller.project_id for poller in exporter.pollers}
            registry = telemetry_registry(exporter.telemetry)
            assert registry.get_sample_value("vias_exporter_shard_ordinal") == shard
            assert registry.get_sample_value("vias_exporter_total_shards") == 2
        assert polled == {p for p in projects if mine[p] == shard}


async def test_check_config_says_which_projects_this_shard_polls(tmp_path: Path) -> None:
    projects = [f"proj-{n}" for n in range(6)]
    config = tmp_path / "config.yml"
    lines = [f"  - {{project_id: {p}, region: r, auth_token: t}}\n" for p in projects]
    config.write_text("targets:\n" + "".join(lines))
    flags = ["--config.file", str(config), "--shard", "1", "--total-shards", "3"]
    code, out, _ = await run("--check-config", *flags, env=env_for("http://127.0.0.1:9"))
    assert code == 0
    owned = [p for p in projects if Sharding(1, 3).owns(p)]
    assert f"shard 1 of 3: polls {len(owned)} of them" in out
    assert {p for p in projects if f"  {p} at " in out} == set(owned)
    code, _, err = await run(
        "--check-config", "--shard", "3", "--total-shards", "3", env=env_for("http://x:9")
    )
    assert code == 2 and "--shard 3: expected below --total-shards 3" in err
