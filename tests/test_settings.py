"""Configuration from the environment and from YAML: valid input loads, bad input names
the field and never echoes a secret."""

from pathlib import Path

import pytest

from exporter.lists import DEFAULT_LISTS, REGISTRY
from exporter.service import poll_interval
from exporter.settings import ConfigError, TargetConfig, load_config

BASE_ENV = {"VIAS_PROJECT_ID": "p1", "VIAS_REGION": "cn-north-4", "VIAS_AUTH_TOKEN": "t0k3n-secret"}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(__import__("os").environ):
        if name.startswith("VIAS_"):
            monkeypatch.delenv(name)
    for name, value in BASE_ENV.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_one_target_from_environment_with_defaults(env: pytest.MonkeyPatch) -> None:
    config = load_config(None, REGISTRY)
    (target,) = config.targets
    assert target.project_id == "p1"
    assert target.api_url == "https://vias.cn-north-4.myhuaweicloud.com"
    assert target.sources == ("tasks", "batch_tasks")
    assert target.poll_interval_seconds == 60
    assert target.auth_mode == "token"
    assert config.global_.max_age_intervals == 3
    assert config.global_.problem_tasks_limit == 200


def test_environment_contract(env: pytest.MonkeyPatch) -> None:
    env.setenv("VIAS_ENDPOINT", "http://127.0.0.1:9801/")
    env.setenv("VIAS_SOURCES", "tasks, infer_tasks,face_edge_tasks")
    env.setenv("VIAS_POLL_INTERVAL_SECONDS", "15")
    (target,) = load_config(None, REGISTRY).targets
    assert target.api_url == "http://127.0.0.1:9801"
    assert target.sources == ("tasks", "infer_tasks", "face_edge_tasks")
    assert target.poll_interval_seconds == 15


def test_secret_from_file(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    env.delenv("VIAS_AUTH_TOKEN")
    env.setenv("VIAS_AUTH_TOKEN_FILE", str(secret))
    (target,) = load_config(None, REGISTRY).targets
    assert target.auth_token is not None
    assert target.auth_token.get_secret_value() == "from-file"
    assert "from-file" not in repr(target)


def test_password_and_aksk_modes(env: pytest.MonkeyPatch) -> None:
    env.delenv("VIAS_AUTH_TOKEN")
    env.setenv("VIAS_USERNAME", "ops")
    env.setenv("VIAS_PASSWORD", "pw-secret")
    env.setenv("VIAS_DOMAIN_NAME", "acme")
    (target,) = load_config(None, REGISTRY).targets
    assert (target.auth_mode, target.iam_url) == (
        "password",
        "https://iam.cn-north-4.myhuaweicloud.com",
    )
    for name in ("VIAS_USERNAME", "VIAS_PASSWORD", "VIAS_DOMAIN_NAME"):
        env.delenv(name)
    env.setenv("VIAS_ACCESS_KEY", "AK1")
    env.setenv("VIAS_SECRET_KEY", "sk-secret")
    assert load_config(None, REGISTRY).targets[0].auth_mode == "aksk"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"VIAS_PROJECT_ID": None}, "VIAS_PROJECT_ID: Field required"),
        (
            {"VIAS_POLL_INTERVAL_SECONDS": "-5"},
            "VIAS_POLL_INTERVAL_SECONDS: Input should be greater than 0",
        ),
        ({"VIAS_SOURCES": "tasks,jobs"}, "VIAS_SOURCES[1]: unknown source; choose from tasks,"),
        ({"VIAS_ENDPOINT": "not a url"}, "VIAS_ENDPOINT:"),
        ({"VIAS_ACCESS_KEY": "AK"}, "exactly one auth mode"),
        ({"VIAS_AUTH_TOKEN": None}, "exactly one auth mode"),
        ({"VIAS_REGION": None}, "VIAS_ENDPOINT or VIAS_REGION is required"),
        (
            {"VIAS_AUTH_TOKEN_FILE": "/etc/hostname"},
            "set VIAS_AUTH_TOKEN or VIAS_AUTH_TOKEN_FILE, not both",
        ),
        ({"VIAS_ACCESS_KEY": "AK"}, "exactly one auth mode is needed: VIAS_AUTH_TOKEN, VIAS_"),
        ({"VIAS_AUTH_TOKEN": None, "VIAS_AUTH_TOKEN_FILE": "/dev/null"}, "secret file is empty"),
        (
            {"VIAS_AUTH_TOKEN_FILE": "/nonexistent/token"},
            "VIAS_AUTH_TOKEN_FILE: Value error, cannot read secret file",
        ),
    ],
)
def test_bad_environment_names_the_field(
    env: pytest.MonkeyPatch, changes: dict[str, str | None], message: str
) -> None:
    for name, value in changes.items():
        if value is None:
            env.delenv(name)
        else:
            env.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_config(None, REGISTRY)
    assert message.replace("Value error, ", "") in str(caught.value)
    assert "t0k3n-secret" not in str(caught.value)


YAML = """
global:
  problem_tasks_limit: 50
  max_age_intervals: 2
targets:
  - project_id: p1
    region: cn-north-4
    auth_token: tok
  - project_id: p2
    endpoint: http://127.0.0.1:9801
    username: ops
    password: pw
    domain_name: acme
    iam_endpoint: http://127.0.0.1:9801
    sources: [tasks, face_edge_tasks]
    poll_interval_seconds: 30
"""


def test_many_targets_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(YAML)
    config = load_config(path, REGISTRY)
    assert [t.project_id for t in config.targets] == ["p1", "p2"]
    assert config.targets[1].sources == ("tasks", "face_edge_tasks")
    assert config.global_.problem_tasks_limit == 50


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("targets: [", "malformed YAML"),
        ("- a\n- b\n", "expected a mapping"),
        ("targets: []", "targets: List should have at least 1 item"),
        ("targets:\n  - region: x\n    auth_token: t\n", "targets[0].project_id: Field required"),
        (
            "targets:\n  - project_id: p\n    region: x\n    auth_token: t\n    colour: red\n",
            "targets[0].colour: Extra inputs are not permitted",
        ),
        (
            "global:\n  max_retries: -1\ntargets:\n  - {project_id: p, region: x, auth_token: t}\n",
            "global.max_retries",
        ),
        (
            "targets:\n" + "  - {project_id: p, region: x, auth_token: t}\n" * 2,
            "project listed twice: p",
        ),
    ],
)
def test_bad_yaml_names_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.yml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as caught:
        load_config(path, REGISTRY)
    assert message in str(caught.value)


def test_unreadable_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yml", REGISTRY)


def test_the_documented_example_is_valid(tmp_path: Path) -> None:
    example = (Path(__file__).parent.parent / "deploy" / "config.example.yml").read_text()
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in ("token", "password", "secret-key"):
        (secrets / name).write_text("s3cr3t\n")
    copy = tmp_path / "config.yml"
    copy.write_text(example.replace("/var/run/secrets/vias", str(secrets)))
    config = load_config(copy, REGISTRY)
    assert [t.auth_mode for t in config.targets] == ["token", "password", "aksk"]


def test_a_missing_secret_file_is_named(tmp_path: Path) -> None:
    example = Path(__file__).parent.parent / "deploy" / "config.example.yml"
    with pytest.raises(ConfigError) as caught:
        load_config(example, REGISTRY)
    assert (
        "targets[0].auth_token_file: cannot read secret file "
        "/var/run/secrets/vias/token: No such file or directory"
    ) in str(caught.value)


def test_malformed_yaml_names_the_file_and_line_never_its_content(tmp_path: Path) -> None:
    """The YAML parser's own message quotes the offending line: a secret, here."""
    path = tmp_path / "config.yml"
    path.write_text(
        "targets:\n  - project_id: p1\n    region: cn-north-4\n    access_key: AK\n"
        '    secret_key: "SUPERSECRET-VALUE-123\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, REGISTRY)
    message = str(caught.value)
    assert message.startswith(f"{path}: malformed YAML at line 6, column 1:")
    assert "SUPERSECRET" not in message and "<unicode string>" not in message


def test_each_list_polls_at_its_own_interval(tmp_path: Path) -> None:
    """A list that costs a call per object polls less often by default (edge_pools: every
    5th interval); `poll_intervals` sets any list's interval in seconds."""
    path = tmp_path / "config.yml"
    path.write_text(
        "targets:\n  - project_id: p1\n    region: r\n    auth_token: t\n"
        "    poll_interval_seconds: 30\n"
        "    sources: [tasks, edge_pools, video_sources]\n"
        "    poll_intervals: {video_sources: 120}\n"
    )
    (target,) = load_config(path, REGISTRY).targets
    assert [poll_interval(target, s) for s in target.sources] == [30, 150, 120]


@pytest.mark.parametrize(
    ("intervals", "message"),
    [
        ("{cameras: 5}", "targets[0].poll_intervals.cameras.[key]: unknown source; choose from"),
        ("{tasks: 0}", "targets[0].poll_intervals.tasks: Input should be greater than 0"),
    ],
)
def test_bad_poll_intervals_name_the_field(tmp_path: Path, intervals: str, message: str) -> None:
    path = tmp_path / "config.yml"
    path.write_text(
        f"targets:\n  - {{project_id: p1, region: r, auth_token: t, poll_intervals: {intervals}}}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, REGISTRY)
    assert message in str(caught.value)


def test_poll_intervals_from_the_environment(env: pytest.MonkeyPatch) -> None:
    env.setenv("VIAS_SOURCES", "tasks,video_groups")
    env.setenv("VIAS_POLL_INTERVALS", '{"video_groups": 600}')
    (target,) = load_config(None, REGISTRY).targets
    assert [poll_interval(target, s) for s in target.sources] == [60, 600]


def test_list_names_are_checked_against_the_registry_handed_in() -> None:
    """Settings does not import the registry (issue 19): validating without it is a
    programming error saying what to pass, never a silent default or an unchecked name."""
    fields = {"project_id": "p", "region": "r", "auth_token": "t"}
    with pytest.raises(TypeError, match="pass context=REGISTRY"):
        TargetConfig.model_validate(fields)
    target = TargetConfig.model_validate(fields, context=REGISTRY)
    assert target.sources == DEFAULT_LISTS == ("tasks", "batch_tasks")
