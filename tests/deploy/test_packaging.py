"""Dockerfile, docker-compose and Kubernetes manifests, checked without Docker or a cluster
(the Kubernetes ones as kustomize renders them, with kubectl's built-in kustomize).

| change (tried, seen red) | failing tests |
|---|---|
| base: `includeSelectors: false` | test_base_kustomization_labels_the_selectors and both |
| | test_kustomize_renders_* (kubectl is installed by `make system-deps`) |
| sharded: `--total-shards=3`, not `$(TOTAL_SHARDS)` (4) | test_each_pod_of_the_sharded_* |
| | and test_the_sharded_overlay_writes_the_number_of_shards_once |
| sharded: the `replacements` (replicas -> TOTAL_SHARDS) removed | the same two |
| sharded: `setHostnameAsFQDN: true` | test_each_pod_of_the_sharded_* |
| sharded: the Service not headless (`clusterIP: ""`) | test_each_pod_of_the_sharded_* |
| sharded: config.yml reads `/var/run/secrets/vias-token` | test_the_sharded_*_mounted |
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from exporter.lists import REGISTRY
from exporter.settings import load_config
from exporter.sharding import Sharding, shard_ordinal
from tests.deploy import stack
from tests.deploy.stack import COMPOSE_FILE, ROOT

DOCKERFILE = ROOT / "Dockerfile"
KUBERNETES = ROOT / "deploy" / "kubernetes"
GENERATOR = KUBERNETES / "generate_prometheusrule.py"
PROMETHEUSRULE = KUBERNETES / "components" / "prometheus-operator" / "prometheusrule.yaml"
PORT = 9875
WORKLOADS = ("Deployment", "StatefulSet")  # the base's, the sharded overlay's


# --- docker-compose ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return cast(dict[str, Any], yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8")))


def _bind_mounts(compose: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(service, host path, mode) of every bind mount (named volumes left out)."""
    mounts = []
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            host, _, rest = volume.partition(":")
            if host.startswith((".", "/")):
                mounts.append((name, host, rest.rpartition(":")[2]))
    return mounts


def test_compose_has_the_whole_stack(compose: dict[str, Any]) -> None:
    services = set(compose["services"])
    assert services == {"simulator", "exporter", "prometheus", "alertmanager", "grafana"}


def test_compose_mounts_exist_and_are_read_only(compose: dict[str, Any]) -> None:
    mounts = _bind_mounts(compose)
    assert len(mounts) >= 5
    for service, host, mode in mounts:
        assert (COMPOSE_FILE.parent / host).exists(), f"{service}: {host} does not exist"
        assert mode == "ro", f"{service}: {host} is mounted writable"


def test_compose_prometheus_uses_the_shipped_rules(compose: dict[str, Any]) -> None:
    volumes = compose["services"]["prometheus"]["volumes"]
    assert "./prometheus/alerts.yml:/etc/prometheus/rules/alerts.yml:ro" in volumes
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/alerts.yml"]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == stack.SCRAPE_JOB
    assert job["static_configs"][0]["targets"] == [f"exporter:{PORT}"]
    targets = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["alertmanager:9093"]


def test_compose_runs_the_simulator_as_the_e2e_test_does(compose: dict[str, Any]) -> None:
    service = compose["services"]["simulator"]
    assert service["entrypoint"] == ["python", "-m", stack.SIMULATOR_MODULE]
    e2e = stack.simulator_args("127.0.0.1:1", "incident", 1, "p1", "sim-token", tasks=200)
    assert set(stack.option_names(service["command"])) <= set(stack.option_names(e2e))
    assert service["command"][service["command"].index("--listen") + 1] == "0.0.0.0:9801"


def test_compose_runs_the_exporter_as_the_e2e_test_does(compose: dict[str, Any]) -> None:
    service = compose["services"]["exporter"]
    assert "entrypoint" not in service  # the image's: the vias-exporter console script
    assert service["command"] == stack.exporter_args(f"0.0.0.0:{PORT}")
    e2e_env = stack.exporter_env("http://x", "p1", "sim-token", "tasks", poll=None)
    assert set(service["environment"]) == set(e2e_env)
    assert service["environment"]["VIAS_ENDPOINT"] == "http://simulator:9801"
    assert service["environment"]["VIAS_AUTH_TOKEN"] == "sim-token"  # the simulator's --token


def test_compose_runs_prometheus_and_alertmanager_as_the_e2e_test_does(
    compose: dict[str, Any],
) -> None:
    prometheus = compose["services"]["prometheus"]["command"]
    assert stack.option_names(prometheus) == stack.option_names(stack.prometheus_args("", "", ""))
    alertmanager = compose["services"]["alertmanager"]["command"]
    e2e = stack.alertmanager_args("", "", "")
    assert stack.option_names(alertmanager) == stack.option_names(e2e)


def test_compose_builds_simulator_and_exporter_from_the_dockerfile(compose: dict[str, Any]) -> None:
    for name in ("simulator", "exporter"):
        build = compose["services"][name]["build"]
        assert (
            COMPOSE_FILE.parent / build["context"] / build["dockerfile"]
        ).resolve() == DOCKERFILE
        assert compose["services"][name]["read_only"] is True


# --- Dockerfile ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dockerfile() -> list[str]:
    """Instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def _instructions(dockerfile: list[str], keyword: str) -> list[str]:
    return [line.split(None, 1)[1] for line in dockerfile if line.split()[0].upper() == keyword]


def _final_stage(dockerfile: list[str]) -> list[str]:
    starts = [i for i, line in enumerate(dockerfile) if line.upper().startswith("FROM ")]
    return dockerfile[starts[-1] :]


def test_dockerfile_is_multi_stage_from_a_pinned_base(dockerfile: list[str]) -> None:
    froms = _instructions(dockerfile, "FROM")
    assert len(froms) >= 2
    for image in froms:
        assert re.match(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?\b", image), image
    assert any("COPY --from=builder /opt/venv" in line for line in _final_stage(dockerfile))


def test_dockerfile_runs_as_a_numeric_non_root_user(dockerfile: list[str]) -> None:
    (user,) = _instructions(_final_stage(dockerfile), "USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0


def test_dockerfile_runtime(dockerfile: list[str]) -> None:
    final = _final_stage(dockerfile)
    assert _instructions(final, "EXPOSE") == [str(PORT)]
    assert _instructions(final, "ENTRYPOINT") == [f'["{stack.EXPORTER_SCRIPT}"]']
    assert any("PYTHONDONTWRITEBYTECODE=1" in env for env in _instructions(final, "ENV"))
    (healthcheck,) = _instructions(final, "HEALTHCHECK")
    assert healthcheck.endswith('CMD ["vias-exporter", "--healthcheck", "/-/healthy"]')


def test_entrypoint_is_the_declared_console_script() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert stack.EXPORTER_SCRIPT in project["scripts"]


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert "*" in lines and "!exporter/" in lines and "!pyproject.toml" in lines


# --- Kubernetes ---------------------------------------------------------------------------


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _kustomize(kubectl: str, directory: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for obj in objects}


def check_objects(objects: list[dict[str, Any]], *, selectors: bool = True) -> None:
    """What a cluster would reject or what would make the exporter unreachable or unsafe
    (`selectors=False`: the files as written, whose selectors kustomize fills in)."""
    for obj in objects:
        assert obj.get("apiVersion") and obj.get("kind"), obj
        assert obj["metadata"]["name"], obj
    kinds = _by_kind(objects)
    (workload,) = [kinds[kind] for kind in WORKLOADS if kind in kinds]
    service = kinds["Service"]
    template = workload["spec"]["template"]
    if selectors:
        pod_labels = template["metadata"]["labels"].items()
        selector = workload["spec"]["selector"]["matchLabels"]
        assert selector and selector.items() <= pod_labels
        assert service["spec"]["selector"] and service["spec"]["selector"].items() <= pod_labels
    pod = template["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["seccompProfile"]["type"] == "RuntimeDefault"
    assert container["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"metrics": PORT}
    (service_port,) = service["spec"]["ports"]
    assert service_port["name"] == "metrics" and service_port["targetPort"] in ("metrics", PORT)
    assert container["args"][container["args"].index("--web.listen-address") + 1].endswith(
        f":{PORT}"
    )
    # the Secret the docs have you create: as environment variables, or as files
    secret_refs = [ref["secretRef"]["name"] for ref in container.get("envFrom", [])]
    secret_refs += [v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v]
    assert secret_refs == ["vias-exporter"]
    if "Secret" in kinds:
        assert kinds["Secret"]["metadata"]["name"] in secret_refs
    if "ServiceMonitor" in kinds:
        monitor = kinds["ServiceMonitor"]["spec"]
        assert monitor["endpoints"][0]["port"] == service_port["name"]
        assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        # the job label the alert rules select (up{job="vias-exporter"})
        assert service["metadata"]["labels"][monitor["jobLabel"]] == stack.SCRAPE_JOB


def test_base_manifests_are_valid() -> None:
    base = KUBERNETES / "base"
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    objects = [doc for name in kustomization["resources"] for doc in _documents(base / name)]
    check_objects(objects, selectors=False)


def test_base_kustomization_labels_the_selectors() -> None:
    """The files leave the selectors to kustomize's `labels`: without includeSelectors the
    Deployment would select nothing (the API server rejects an empty selector) and the
    Service every pod of the namespace. The rendered objects are checked below."""
    kustomization = yaml.safe_load((KUBERNETES / "base" / "kustomization.yaml").read_text())
    selecting = [entry for entry in kustomization["labels"] if entry.get("includeSelectors")]
    assert selecting, "no labels with includeSelectors: true"
    assert any("app.kubernetes.io/name" in entry["pairs"] for entry in selecting)


def test_kustomize_renders_the_base(kubectl: str) -> None:
    objects = _kustomize(kubectl, KUBERNETES / "base")
    # No Secret: applying the base must never overwrite the credentials created by hand.
    assert {obj["kind"] for obj in objects} == {"Deployment", "Service"}
    check_objects(objects)


def test_kustomize_renders_the_overlay_with_the_operator_component(kubectl: str) -> None:
    objects = _kustomize(kubectl, KUBERNETES / "overlays" / "example")
    kinds = _by_kind(objects)
    assert {"ServiceMonitor", "PrometheusRule", "Secret"} <= set(kinds)
    assert all(obj["metadata"]["namespace"] == "monitoring" for obj in objects)
    check_objects(objects)
    rules = yaml.safe_load(stack.RULES_FILE.read_text(encoding="utf-8"))
    assert kinds["PrometheusRule"]["spec"]["groups"] == rules["groups"]


def test_prometheusrule_does_not_drift_from_the_rules_file() -> None:
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    (rule,) = _documents(PROMETHEUSRULE)
    rules = yaml.safe_load(stack.RULES_FILE.read_text(encoding="utf-8"))
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == rules["groups"]


# --- the sharded overlay ------------------------------------------------------------------

SHARDED = KUBERNETES / "overlays" / "sharded"


def _expand(value: str, env: dict[str, str]) -> str:
    """`$(NAME)` in a container's args, expanded from its env as the kubelet does."""
    return re.sub(r"\$\((\w+)\)", lambda match: env[match.group(1)], value)


def _option(args: list[str], name: str) -> str:
    """The value of `--name=value` or `--name value`."""
    for index, arg in enumerate(args):
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
        if arg == name:
            return args[index + 1]
    raise AssertionError(f"no {name} in {args}")


def _sharded_args(statefulset: dict[str, Any]) -> list[str]:
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    env = {var["name"]: var["value"] for var in container.get("env", []) if "value" in var}
    return [_expand(arg, env) for arg in container["args"]]


def test_kustomize_renders_the_sharded_overlay(kubectl: str) -> None:
    objects = _kustomize(kubectl, SHARDED)
    kinds = _by_kind(objects)
    assert set(kinds) == {"StatefulSet", "Service", "ConfigMap", "ServiceMonitor", "PrometheusRule"}
    assert all(obj["metadata"]["namespace"] == "monitoring" for obj in objects)
    check_objects(objects)  # selectors: StatefulSet and Service select the pods, the
    # ServiceMonitor the Service


def test_each_pod_of_the_sharded_overlay_is_a_shard_of_replicas(kubectl: str) -> None:
    """`--shard=auto` reads the ordinal ending the hostname, which in a StatefulSet is the
    pod's name `<name>-<ordinal>`; `--total-shards` is the replica count; the Service is the
    StatefulSet's and headless, so that every pod is a scrape target."""
    kinds = _by_kind(_kustomize(kubectl, SHARDED))
    statefulset, service = kinds["StatefulSet"], kinds["Service"]
    spec, pod = statefulset["spec"], statefulset["spec"]["template"]["spec"]
    args = _sharded_args(statefulset)
    assert _option(args, "--shard") == "auto"
    total = int(_option(args, "--total-shards"))
    assert total == spec["replicas"] > 1
    # spec.hostname or an FQDN as hostname would hide the ordinal from --shard=auto
    assert "hostname" not in pod and not pod.get("setHostnameAsFQDN")
    name = statefulset["metadata"]["name"]
    shards = [Sharding(shard_ordinal("auto", f"{name}-{n}"), total) for n in range(total)]
    assert [shard.shard for shard in shards] == list(range(total))
    assert spec["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"


def test_the_sharded_overlay_writes_the_number_of_shards_once(kubectl: str, tmp_path: Path) -> None:
    """A copy of the overlay with another `replicas` count: --total-shards follows it."""
    shutil.copytree(KUBERNETES, tmp_path / "kubernetes")
    copy = tmp_path / "kubernetes" / SHARDED.relative_to(KUBERNETES)
    kustomization = copy / "kustomization.yaml"
    text = kustomization.read_text(encoding="utf-8")
    changed = re.sub(r"(\n    count:) \d+\n", r"\1 7\n", text, count=1)
    assert changed != text
    kustomization.write_text(changed, encoding="utf-8")
    statefulset = _by_kind(_kustomize(kubectl, copy))["StatefulSet"]
    assert statefulset["spec"]["replicas"] == 7
    assert _option(_sharded_args(statefulset), "--total-shards") == "7"


def test_the_sharded_overlay_config_is_valid_and_mounted(kubectl: str, tmp_path: Path) -> None:
    """The ConfigMap's config.yml loads (its secret files under the Secret's mount), at the
    path --config.file names."""
    kinds = _by_kind(_kustomize(kubectl, SHARDED))
    statefulset, config_map = kinds["StatefulSet"], kinds["ConfigMap"]
    pod = statefulset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    (config_volume,) = [n for n, v in volumes.items() if "configMap" in v]
    (secret_volume,) = [n for n, v in volumes.items() if "secret" in v]
    assert volumes[config_volume]["configMap"]["name"] == config_map["metadata"]["name"]
    (file_name,) = config_map["data"]
    config_file = f"{mounts[config_volume]}/{file_name}"
    assert _option(_sharded_args(statefulset), "--config.file") == config_file

    secrets = tmp_path / "secrets"
    secrets.mkdir()
    text = config_map["data"][file_name]
    for name in set(re.findall(rf"{re.escape(mounts[secret_volume])}/([\w.-]+)", text)):
        (secrets / name).write_text("s3cr3t\n", encoding="utf-8")
    copy = tmp_path / file_name
    copy.write_text(text.replace(mounts[secret_volume], str(secrets)), encoding="utf-8")
    config = load_config(copy, REGISTRY)  # fails naming a secret file not under the Secret's mount
    assert len(config.targets) > 1
