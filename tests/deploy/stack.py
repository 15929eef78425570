"""The commands that start the monitoring stack, shared by the end-to-end test (which runs
them for real on loopback) and the packaging test (which checks that deploy/docker-compose.yml
runs the same programs with the same options)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
DASHBOARD = ROOT / "grafana" / "dashboards" / "vias-overview.json"
COMPOSE_FILE = ROOT / "deploy" / "docker-compose.yml"
METRICS_DOC = ROOT / "docs" / "metrics.md"
RUNBOOK = ROOT / "docs" / "runbook.md"

SCRAPE_JOB = "vias-exporter"  # the job label the alert rules select: up{job="vias-exporter"}
SIMULATOR_MODULE = "exporter.simulator"
EXPORTER_SCRIPT = "vias-exporter"


def simulator_args(
    listen: str, scenario: str, step_interval: float, project: str, token: str, tasks: int | None
) -> list[str]:
    """Arguments after `python -m exporter.simulator`."""
    args = [
        "--listen",
        listen,
        "--scenario",
        scenario,
        "--step-interval",
        f"{step_interval:g}",
        "--projects",
        project,
        "--token",
        token,
    ]
    if tasks is not None:
        args += ["--tasks", str(tasks)]
    return args


def exporter_args(listen: str) -> list[str]:
    """Arguments after the `vias-exporter` console script."""
    return ["--web.listen-address", listen]


def exporter_env(
    endpoint: str, project: str, token: str, sources: str, poll: float | None
) -> dict[str, str]:
    env = {
        "VIAS_ENDPOINT": endpoint,
        "VIAS_PROJECT_ID": project,
        "VIAS_AUTH_TOKEN": token,
        "VIAS_SOURCES": sources,
    }
    if poll is not None:
        env["VIAS_POLL_INTERVAL_SECONDS"] = f"{poll:g}"
    return env


def prometheus_args(config: str, storage: str, listen: str) -> list[str]:
    return [
        f"--config.file={config}",
        f"--storage.tsdb.path={storage}",
        f"--web.listen-address={listen}",
    ]


def alertmanager_args(config: str, storage: str, listen: str) -> list[str]:
    return [
        f"--config.file={config}",
        f"--storage.path={storage}",
        f"--web.listen-address={listen}",
        "--cluster.listen-address=",
    ]


def option_names(args: list[str]) -> list[str]:
    """`--name` of every option in an argument list, for either `--name value` or `--name=value`."""
    return [arg.split("=", 1)[0] for arg in args if arg.startswith("--")]
