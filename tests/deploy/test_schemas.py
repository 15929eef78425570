"""deploy/docker-compose.yml against the Compose specification's JSON schema, and the
Kubernetes manifests, as kustomize renders them, against the Kubernetes API's JSON schemas:
neither Docker nor a cluster runs here, so the schemas stand in for them.

The Compose schema is the one check-jsonschema vendors (`vendor.compose-spec`); the
Kubernetes schemas are the ones kubernetes-validate ships (per Kubernetes version, the
`-strict` variants, which reject unknown fields). Both are PyPI packages in the test extra.
The prometheus-operator kinds (ServiceMonitor, PrometheusRule) are custom resources: no
Kubernetes schema covers them, so they are left to test_packaging.py's checks.

| change (tried, seen red) | failing tests |
|---|---|
| compose: the exporter's `restart` spelt `restrat` | test_compose_file_matches_the_compose_spec |
| deployment.yaml: `readinessProbe.httpGet.paht` | test_kustomize_output_matches_the_* (6) |
| sharded/statefulset.yaml: `servicName` | test_kustomize_output_matches_the_*[*sharded*] (2) |
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.stack import COMPOSE_FILE, ROOT

KUBERNETES = ROOT / "deploy" / "kubernetes"
# An older Kubernetes release and the newest one kubernetes-validate has schemas for.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
CUSTOM_RESOURCES = {"ServiceMonitor", "PrometheusRule"}


def _check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_compose_file_matches_the_compose_spec() -> None:
    result = _check_compose(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_schema_rejects_what_compose_would(tmp_path: Path) -> None:
    """The check sees something: unknown keys and a wrong type fail it."""
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    for spoil in ({"restrat": "always"}, {"healthcheck": {"intervall": "5s"}}, {"ports": 9875}):
        spoilt = tmp_path / "docker-compose.yml"
        service = compose["services"]["exporter"] | spoil
        spoilt.write_text(yaml.safe_dump(compose | {"services": {"exporter": service}}))
        assert _check_compose(spoilt).returncode == 1, spoil


def _kustomize(kubectl: str, directory: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _errors(objects: list[dict[str, Any]], version: str) -> list[str]:
    errors = []
    for obj in objects:
        if obj["kind"] in CUSTOM_RESOURCES:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            errors.append(f"{obj['kind']}/{obj['metadata']['name']} {path}: {error.message}")
    return errors


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    ("directory", "workload"),
    [
        ("base", "Deployment"),
        ("overlays/example", "Deployment"),
        ("overlays/sharded", "StatefulSet"),
    ],
)
def test_kustomize_output_matches_the_kubernetes_schemas(
    kubectl: str, directory: str, workload: str, version: str
) -> None:
    objects = _kustomize(kubectl, KUBERNETES / directory)
    assert {workload, "Service"} <= {obj["kind"] for obj in objects}
    assert _errors(objects, version) == []


def test_the_kubernetes_schemas_reject_what_the_api_server_would(kubectl: str) -> None:
    """Strict schemas: a misspelt field and a wrong type are both named."""
    (deployment,) = [
        obj for obj in _kustomize(kubectl, KUBERNETES / "base") if obj["kind"] == "Deployment"
    ]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["httpGet"]["paht"] = container["readinessProbe"]["httpGet"].pop(
        "path"
    )
    deployment["spec"]["replicas"] = "one"
    (error,) = _errors([deployment], KUBERNETES_VERSIONS[-1])
    assert "Deployment/vias-exporter" in error
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
