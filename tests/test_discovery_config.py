"""The `discovery` section: what it accepts, errors that name the field and never the value,
`targets` optional with it, the documented example, `--check-config`'s summary.

| change to the code (tried, seen red) | failing test |
|---|---|
| both auth modes accepted together | test_exactly_one_auth_mode |
| `secret_key_file` not read | test_secrets_from_files |
| `regions` may be empty | test_errors_name_the_field_never_the_value |
| `targets` required even with discovery | test_targets_are_optional_with_discovery |
| `targets: []` accepted without discovery | test_targets_are_optional_with_discovery |
| a placeholder other than {region} accepted | test_endpoint_template |
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.lists import REGISTRY
from exporter.settings import Config, ConfigError, DiscoveryConfig, load_config

EXAMPLE = Path(__file__).parent.parent / "deploy" / "config.example.yml"
AKSK = {"access_key": "AKDISCOVERY", "secret_key": "SK-TOP-s3cr3t"}
PASSWORD = {"username": "ops", "password": "PW-TOP-s3cr3t", "domain_name": "acme"}


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def error_of(tmp_path: Path, discovery: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, {"discovery": discovery}), REGISTRY)
    return str(caught.value)


def test_defaults() -> None:
    config = DiscoveryConfig.model_validate({**AKSK, "regions": ["cn-north-4"]}, context=REGISTRY)
    assert config.iam_endpoint == "https://iam.myhuaweicloud.com"
    assert config.refresh_interval_seconds == 300
    assert config.sources == ("tasks", "batch_tasks")
    assert config.api_url("cn-east-3") == "https://vias.cn-east-3.myhuaweicloud.com"
    assert config.auth_mode == "aksk"


def test_exactly_one_auth_mode(tmp_path: Path) -> None:
    both = error_of(tmp_path, {**AKSK, **PASSWORD, "regions": ["r"]})
    assert "discovery: discovery needs exactly one auth mode" in both and "found: both" in both
    none = error_of(tmp_path, {"regions": ["r"]})
    assert "found: none" in none
    no_domain = error_of(tmp_path, {"username": "u", "password": "p", "regions": ["r"]})
    assert "password login needs domain_name" in no_domain
    half = error_of(tmp_path, {"access_key": "AK", "regions": ["r"]})
    assert "AK/SK signing needs both access_key and secret_key" in half


def test_errors_name_the_field_never_the_value(tmp_path: Path) -> None:
    message = error_of(
        tmp_path,
        {
            **PASSWORD,
            "regions": [],
            "include": ["(PW-TOP-s3cr3t"],
            "refresh_interval_seconds": 0,
            "sources": ["nope"],
        },
    )
    assert "discovery.regions: List should have at least 1 item" in message
    assert "discovery.include[0]:" in message
    assert "discovery.refresh_interval_seconds:" in message
    assert "discovery.sources[0]: unknown source" in message
    assert "s3cr3t" not in message
    sub = error_of(tmp_path, {**AKSK, "regions": ["cn-north-4_video"]})
    assert "discovery.regions: a region is a name such as cn-north-4, without `_`" in sub


def test_secrets_from_files(tmp_path: Path) -> None:
    secret = tmp_path / "sk"
    secret.write_text("SK-from-file\n")
    config = DiscoveryConfig.model_validate(
        {"access_key": "AK", "secret_key_file": str(secret), "regions": ["r"]}, context=REGISTRY
    )
    assert config.secret_key is not None
    assert config.secret_key.get_secret_value() == "SK-from-file"
    missing = error_of(
        tmp_path, {"access_key": "AK", "secret_key_file": str(tmp_path / "gone"), "regions": ["r"]}
    )
    assert f"discovery.secret_key_file: cannot read secret file {tmp_path / 'gone'}" in missing
    both = error_of(tmp_path, {**AKSK, "secret_key_file": str(secret), "regions": ["r"]})
    assert "set secret_key or secret_key_file, not both" in both and "SK-TOP" not in both


def test_targets_are_optional_with_discovery(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, {"discovery": {**AKSK, "regions": ["cn-north-4"]}}), REGISTRY
    )
    assert config.targets == [] and config.discovery is not None
    empty: dict[str, Any]
    for empty in ({"targets": []}, {}):
        with pytest.raises(ConfigError) as caught:
            load_config(write(tmp_path, empty), REGISTRY)
        assert "targets: List should have at least 1 item, or a discovery section" in str(
            caught.value
        )


def test_endpoint_template() -> None:
    config = DiscoveryConfig.model_validate(
        {**AKSK, "regions": ["r"], "endpoint": "https://vias.{region}.corp.example/"},
        context=REGISTRY,
    )
    assert config.api_url("cn-east-3") == "https://vias.cn-east-3.corp.example"
    with pytest.raises(
        ValueError, match=r"the only placeholder an endpoint may hold is \{region\}"
    ):
        DiscoveryConfig.model_validate(
            {**AKSK, "regions": ["r"], "endpoint": "https://{project}.corp.example"},
            context=REGISTRY,
        )


def test_the_documented_example_discovers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in ("token", "password", "secret-key"):
        (secrets / name).write_text("s3cr3t\n")
    copy = tmp_path / "config.yml"
    copy.write_text(EXAMPLE.read_text().replace("/var/run/secrets/vias", str(secrets)))
    config: Config = load_config(copy, REGISTRY)
    assert config.discovery is not None
    assert config.discovery.regions == ["cn-north-4", "cn-east-3"]
    assert [p.pattern for p in config.discovery.exclude] == [".*_sandbox"]
    checked = subprocess.run(
        [sys.executable, "-m", "exporter", "--config.file", str(copy), "--check-config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    out = checked.stdout
    assert (
        "discovery: projects of regions cn-north-4, cn-east-3, exclude .*_sandbox from "
        "https://iam.myhuaweicloud.com (AK/SK), every 300s; each polls tasks,batch_tasks every 60s"
    ) in out
    assert "s3cr3t" not in out
