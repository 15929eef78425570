"""Configuration that would misdirect requests, merge series or leak a value: project ids
that are paths, one project listed at two spellings of its endpoint, YAML tags and aliases
holding secrets (through `load_config`, `POST /-/reload` and the console script), and the
command line's shard flags and `VIAS_POLL_INTERVALS`.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp
import pytest

from exporter.lists import REGISTRY
from exporter.reload import Reloader
from exporter.service import Exporter
from exporter.settings import ConfigError, load_config
from exporter.web import create_app
from tests.support import make_config, serving_app, target

EXPORTER = Path(sys.executable).parent / "vias-exporter"
SECRET = "Hunter2"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "project_id", ["../../v3/projects?x=", "p1/../p2", "..", "a b", "-p", "x" * 65, "p%2F"]
)
def test_a_project_id_that_could_leave_its_path_is_refused(tmp_path: Path, project_id: str) -> None:
    text = f"targets:\n  - {{project_id: '{project_id}', region: x, auth_token: t}}\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path / "c.yml", text), REGISTRY)
    assert "targets[0].project_id: a project id is 32 hex characters" in str(caught.value)


@pytest.mark.parametrize(
    "project_id", ["0123456789abcdef0123456789abcdef", "p1", "demo-project", "cn_north_4"]
)
def test_usual_project_ids_are_accepted(tmp_path: Path, project_id: str) -> None:
    text = f"targets:\n  - {{project_id: '{project_id}', region: x, auth_token: t}}\n"
    assert (
        load_config(write(tmp_path / "c.yml", text), REGISTRY).targets[0].project_id == project_id
    )


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("endpoint: 'http://127.0.0.1:8080'", "endpoint: 'http://localhost:8080'"),
        ("region: cn-north-4", "region: cn-east-3"),
    ],
)
def test_one_project_at_two_spellings_of_its_endpoint_is_refused(
    tmp_path: Path, first: str, second: str
) -> None:
    """Series are keyed by project_id: two targets of one project would write one set."""
    text = (
        "targets:\n"
        f"  - {{project_id: p1, auth_token: t, {first}}}\n"
        f"  - {{project_id: p1, auth_token: t, {second}}}\n"
    )
    with pytest.raises(ConfigError, match="project listed twice: p1"):
        load_config(write(tmp_path / "c.yml", text), REGISTRY)


YAML_WITH_SECRETS = [
    f"targets:\n  - project_id: p1\n    region: x\n    username: u\n    password: !{SECRET}\n",
    f"targets:\n  - project_id: p1\n    region: x\n    auth_token: *{SECRET}\n",
    f"targets:\n  - project_id: p1\n    region: x\n    auth_token: !!{SECRET} x\n",
    f"targets:\n  - project_id: p1\n    region: x\n    auth_token: !<{SECRET}> x\n",
]


@pytest.mark.parametrize("text", YAML_WITH_SECRETS)
def test_a_yaml_tag_or_alias_is_never_echoed(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path / "c.yml", text), REGISTRY)
    message = str(caught.value)
    assert "malformed YAML at line 5" in message or "malformed YAML at line 4" in message
    assert SECRET not in message


async def test_a_yaml_tag_is_not_in_the_reload_answer(tmp_path: Path) -> None:
    """`POST /-/reload` answers the error: without the value."""
    config_file = write(tmp_path / "c.yml", YAML_WITH_SECRETS[0])
    config = make_config([target("http://127.0.0.1:9", "p1")])
    async with Exporter(config) as exporter:
        reloader = Reloader(exporter, lambda: load_config(config_file, REGISTRY))
        app = create_app(exporter, reloader=reloader)
        async with (
            serving_app(app) as url,
            aiohttp.ClientSession() as session,
            session.post(url + "/-/reload") as response,
        ):
            body = await response.text()
    assert response.status == 500
    assert "malformed YAML" in body and SECRET not in body


async def run(*args: str, **env: str) -> tuple[int, str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VIAS_")}
    process = await asyncio.create_subprocess_exec(
        str(EXPORTER),
        *args,
        env={**clean, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_yaml_tag_is_not_on_stderr(tmp_path: Path) -> None:
    config_file = write(tmp_path / "c.yml", YAML_WITH_SECRETS[0])
    code, out, err = await run("--check-config", "--config.file", str(config_file))
    assert code == 2
    assert "malformed YAML" in err and SECRET not in err + out


TARGET_ENV = {"VIAS_PROJECT_ID": "p1", "VIAS_REGION": "cn-north-4", "VIAS_AUTH_TOKEN": "t0ken"}


async def test_bad_json_in_vias_poll_intervals_is_a_configuration_error() -> None:
    """Documented: exit 2 naming the variable; not a traceback and exit 1."""
    code, out, err = await run(
        "--check-config", **TARGET_ENV, VIAS_POLL_INTERVALS='{"tasks": 30, s3cr3t'
    )
    assert code == 2
    assert "VIAS_POLL_INTERVALS: not valid JSON" in err
    assert "Traceback" not in err and "s3cr3t" not in err + out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--total-shards", "0"], "--total-shards: expected 1 or more replicas, got 0"),
        (["--shard", "x"], "--shard: expected a number from 0 to 0 or auto, got 'x'"),
        (["--shard", "-1", "--total-shards", "2"], "expected a number from 0 to 1 or auto"),
        (["--shard", "2", "--total-shards", "2"], "--shard 2: expected below --total-shards 2"),
    ],
)
async def test_bad_shard_flags_name_the_flag(args: list[str], message: str) -> None:
    code, _, err = await run("--check-config", *args, **TARGET_ENV)
    assert code == 2
    assert message in err
    assert "invalid literal" not in err and "is not one of 0" not in err
