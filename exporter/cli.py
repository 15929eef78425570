"""Command line, with the flag names Prometheus exporters share."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import structlog

from exporter import __version__
from exporter.discovery import describe_discovery
from exporter.healthcheck import probe, running_web_args
from exporter.lists import DISTINCT_LISTS, REGISTRY
from exporter.logs import LEVELS, configure_logging
from exporter.metric_filter import MetricFilter, MetricFilterError
from exporter.reload import Reloader
from exporter.service import Exporter, freeze_startup_heap, limit_malloc_arenas, poll_interval
from exporter.settings import Config, ConfigError, TargetConfig, load_config
from exporter.sharding import Sharding, shard_ordinal
from exporter.web import create_app
from exporter.web_limit_counts import LIMIT_COUNTS_KEY
from exporter.webconfig import WebConfig, load_web_config
from exporter.webserver import (
    DEFAULT_WEB_LIMITS,
    WebLimits,
    fit_descriptor_limit,
    quiet_accept_errors,
    start_site,
)

DEFAULT_LISTEN_ADDRESS = ":9875"
DEMO_PROJECT_ID = "demo-project"
DEMO_TOKEN = "sim-token"
DEMO_POLL_INTERVAL_SECONDS = 10.0
EXIT_CONFIG_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it

log = structlog.get_logger(__name__)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="vias-exporter",
        description="Prometheus exporter for Huawei Cloud VIAS jobs. Without --config.file, "
        "one target is read from VIAS_* environment variables.",
    )
    parser.add_argument("--config.file", dest="config_file", type=Path, help="YAML config")
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default=DEFAULT_LISTEN_ADDRESS,
        help=f"address to serve on (default {DEFAULT_LISTEN_ADDRESS})",
    )
    parser.add_argument(
        "--web.telemetry-path", dest="telemetry_path", default="/metrics", help="metrics path"
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        type=Path,
        help="exporter-toolkit web config: TLS and basic auth",
    )
    parser.add_argument(
        "--web.max-connections",
        dest="max_connections",
        type=_positive_int,
        default=DEFAULT_WEB_LIMITS.max_connections,
        help="open connections at most; at the cap an idle one is closed to admit a new one "
        f"(default {DEFAULT_WEB_LIMITS.max_connections})",
    )
    parser.add_argument(
        "--web.read-header-timeout",
        dest="read_header_timeout",
        type=_duration,
        default=DEFAULT_WEB_LIMITS.read_header_timeout_seconds,
        help="a new connection's TLS handshake and request headers must arrive within this "
        f"(default {DEFAULT_WEB_LIMITS.read_header_timeout_seconds:g}s)",
    )
    parser.add_argument(
        "--web.idle-timeout",
        dest="idle_timeout",
        type=_duration,
        default=DEFAULT_WEB_LIMITS.idle_timeout_seconds,
        help="a kept-alive connection is closed after this long without a request "
        f"(default {DEFAULT_WEB_LIMITS.idle_timeout_seconds:g}s)",
    )
    parser.add_argument(
        "--web.enable-lifecycle",
        dest="enable_lifecycle",
        action="store_true",
        help="serve POST /-/reload, which re-reads the configuration (SIGHUP always does)",
    )
    lists = parser.add_mutually_exclusive_group()
    lists.add_argument(
        "--metric-allowlist",
        help="comma-separated regular expressions: export only the metric families whose "
        "name one matches whole (self-metrics included)",
    )
    lists.add_argument(
        "--metric-denylist",
        help="comma-separated regular expressions: drop the metric families whose name one "
        "matches whole",
    )
    parser.add_argument(
        "--shard",
        default="0",
        help="this replica's shard, or auto for the ordinal ending a StatefulSet pod's "
        "hostname (default 0)",
    )
    parser.add_argument(
        "--total-shards",
        type=int,
        default=1,
        help="replicas the projects are spread over by a consistent hash of the project id "
        "(default 1)",
    )
    parser.add_argument(
        "--log.level",
        dest="log_level",
        choices=LEVELS,
        default="info",
        help="least severe log level shown (default info)",
    )
    parser.add_argument(
        "--log.format",
        dest="log_format",
        choices=("console", "json"),
        default="console",
        help="console lines for people, json lines for log pipelines (default console)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--demo",
        action="store_true",
        help="start the built-in VIAS simulator and export its jobs (no cloud account needed)",
    )
    mode.add_argument(
        "--check-config", action="store_true", help="validate the configuration and exit"
    )
    mode.add_argument(
        "--once", action="store_true", help="poll every source once, print the metrics, exit"
    )
    mode.add_argument(
        "--healthcheck",
        nargs="?",
        const="/-/healthy",
        metavar="PATH",
        help="ask the running exporter's /-/healthy (or PATH) over HTTP or HTTPS as it serves, "
        "exit 0 when it answers 200 (for HEALTHCHECK and exec probes); without --web.* flags, "
        "those of PID 1",
    )
    parser.add_argument("--version", action="version", version=f"vias-exporter {__version__}")
    return parser.parse_args(argv)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)?")
_SECONDS_PER_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(text: str) -> float:
    """`10s`, `500ms`, `2m`, `1h` or a number of seconds; more than 0."""
    matched = _DURATION.fullmatch(text.strip())
    seconds = float(matched[1]) * _SECONDS_PER_UNIT[matched[2] or "s"] if matched else 0.0
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"expected a duration such as 10s or 500ms, got {text!r}")
    return seconds


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number above 0, got {text!r}")
    return int(text)


def parse_listen_address(address: str) -> tuple[str | None, int]:
    """`host:port`, `:port` (every interface) or `[v6]:port`."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--web.listen-address: expected host:port, got {address!r}")
    host = host.strip("[]")
    return (host or None), int(port)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.healthcheck is not None:
        return _healthcheck(list(sys.argv[1:] if argv is None else argv))
    configure_logging(args.log_level, args.log_format)
    try:
        if args.demo and args.config_file is not None:
            raise ConfigError("--demo runs against the built-in simulator: drop --config.file")
        listen = parse_listen_address(args.listen_address)
        config = None if args.demo else load_config(args.config_file, REGISTRY)
        web_config = load_web_config(args.web_config_file) if args.web_config_file else None
        sharding = _sharding(args.shard, args.total_shards)
        metric_filter = _metric_filter(args.metric_allowlist, args.metric_denylist)
    except ConfigError as error:
        print(f"vias-exporter: configuration error:\n{error}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    if args.check_config:
        assert config is not None
        print(_describe_config(config, sharding))
        return 0
    try:
        if args.once:
            assert config is not None
            return asyncio.run(_once(config, sharding, metric_filter))
        asyncio.run(_serve(args, config, listen, web_config, sharding, metric_filter))
    except OSError as error:  # the listen address is taken or not ours
        print(f"vias-exporter: cannot serve on {args.listen_address}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers are in place
        print("vias-exporter: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _healthcheck(argv: list[str]) -> int:
    """Exit 0 when the exporter answers 200, 1 otherwise (Docker's "unhealthy")."""
    given = any(
        word.partition("=")[0] in ("--web.listen-address", "--web.config.file") for word in argv
    )
    args = parse_args(argv if given else [*running_web_args(), *argv])
    try:
        host, port = parse_listen_address(args.listen_address)
        web_config = load_web_config(args.web_config_file) if args.web_config_file else None
    except ConfigError as error:
        print(f"vias-exporter: healthcheck: {error}", file=sys.stderr)
        return 1
    problem = probe(host, port, web_config, args.healthcheck)
    if problem is not None:
        print(f"vias-exporter: healthcheck: {problem}", file=sys.stderr)
        return 1
    return 0


def _sharding(shard: str, total: int) -> Sharding:
    if total < 1:
        raise ConfigError(f"--total-shards: expected 1 or more replicas, got {total}")
    if shard != "auto" and not shard.isdigit():
        expected = f"a number from 0 to {total - 1} or auto"
        raise ConfigError(f"--shard: expected {expected}, got {shard!r}")
    try:
        ordinal = shard_ordinal(shard, socket.gethostname())
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if ordinal >= total:
        raise ConfigError(f"--shard {ordinal}: expected below --total-shards {total}")
    return Sharding(ordinal, total)


def _metric_filter(allowlist: str | None, denylist: str | None) -> MetricFilter:
    try:
        return MetricFilter.parse(allowlist, denylist)
    except MetricFilterError as error:
        raise ConfigError(str(error)) from None


def _describe_config(config: Config, sharding: Sharding) -> str:
    lines = [f"configuration OK: {len(config.targets)} target(s)"]
    if sharding.total > 1:
        owned = sum(1 for target in config.targets if sharding.owns(target.project_id))
        lines.append(f"shard {sharding.shard} of {sharding.total}: polls {owned} of them")
    for target in config.targets:
        if not sharding.owns(target.project_id):
            continue
        by_interval: dict[float, list[str]] = {}
        for source in target.sources:
            by_interval.setdefault(poll_interval(target, source), []).append(source)
        polls = "; ".join(
            f"{','.join(sources)} every {interval:g}s" for interval, sources in by_interval.items()
        )
        lines.append(f"  {target.project_id} at {target.api_url}: {polls}, auth {target.auth_mode}")
    if config.discovery is not None:
        lines.append(describe_discovery(config.discovery))
    return "\n".join(lines)


async def _once(config: Config, sharding: Sharding, metric_filter: MetricFilter) -> int:
    async with Exporter(config, sharding=sharding, metric_filter=metric_filter) as exporter:
        freeze_startup_heap()
        discovered = await exporter.discover()  # with discovery: the account's projects too
        await exporter.poll_all_once()  # each poll re-renders the exposition before returning
        sys.stdout.buffer.write(exporter.exposition.body(openmetrics=False, gzipped=False))
        sys.stdout.flush()
        states = exporter.store.current.sources.values()
        return 0 if discovered and all(state.up for state in states) else 1


@contextlib.asynccontextmanager
async def _demo_config() -> AsyncIterator[Config]:
    """The built-in simulator on a free loopback port, and a config pointing at it."""
    from exporter.simulator import Simulator, World, run_simulator

    world = World.generate(seed=1, project_ids=[DEMO_PROJECT_ID], scenario="demo")
    simulator = Simulator(world, token=DEMO_TOKEN)
    async with run_simulator(
        simulator, host="127.0.0.1", port=0, step_interval=DEMO_POLL_INTERVAL_SECONDS
    ) as url:
        log.info("demo simulator started", url=url, project_id=DEMO_PROJECT_ID)
        target = TargetConfig.model_validate(
            {
                "project_id": DEMO_PROJECT_ID,
                "endpoint": url,
                "auth_token": DEMO_TOKEN,
                "sources": DISTINCT_LISTS,
                "poll_interval_seconds": DEMO_POLL_INTERVAL_SECONDS,
            },
            context=REGISTRY,
        )
        yield Config(targets=[target])


async def _serve(
    args: argparse.Namespace,
    config: Config | None,
    listen: tuple[str | None, int],
    web_config: WebConfig | None,
    sharding: Sharding,
    metric_filter: MetricFilter,
) -> None:
    path = args.telemetry_path
    async with contextlib.AsyncExitStack() as stack:
        if config is None:
            config = await stack.enter_async_context(_demo_config())
            demo_config = config
            reload_from: Callable[[], Config] = lambda: demo_config  # noqa: E731
        else:  # the file again, or the VIAS_* variables again
            reload_from = functools.partial(load_config, args.config_file, REGISTRY)
        exporter = await stack.enter_async_context(
            Exporter(config, sharding=sharding, metric_filter=metric_filter)
        )
        reloader = Reloader(exporter, reload_from)
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reloader.on_signal)
        app = create_app(
            exporter,
            telemetry_path=path,
            web_config=web_config,
            reloader=reloader if args.enable_lifecycle else None,
        )
        quiet_accept_errors(asyncio.get_running_loop(), app[LIMIT_COUNTS_KEY])
        limits = fit_descriptor_limit(
            WebLimits(args.max_connections, args.read_header_timeout, args.idle_timeout)
        )
        host, port = listen
        tls = web_config.tls_server_config if web_config else None
        runner, _ = await start_site(
            app, host, port, limits, ssl_context=tls.ssl_context() if tls else None
        )
        stack.push_async_callback(runner.cleanup)
        log.info("serving", address=f"{host or '0.0.0.0'}:{port}", metrics_path=path)
        freeze_startup_heap()
        limit_malloc_arenas()
        exporter.start()
        await _until_signalled()
        log.info("shutting down")


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
