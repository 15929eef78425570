"""The bench's server processes, driven by JSON lines on stdin/stdout.

`scrape --variant exporter|baseline|limit --series N` serves /metrics of a snapshot of
about N series: the exporter (`exporter.web.create_app`, cached render), the baseline
(prometheus-client's stock aiohttp handler, rendering on every scrape) or the limit (a
handler answering the same bytes as a constant).

`stall --url URL --settings JSON` runs the real exporter against a simulator, serves it and
measures event-loop stalls; `poll` on stdin runs one poll of every source and answers its
duration and the longest stall meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from bench.fixtures import HOST, count_series, exporter_config, snapshot_exporter
from exporter.collector import TEXT_CONTENT_TYPE
from exporter.logs import configure_logging
from exporter.service import Exporter, freeze_startup_heap
from exporter.web import create_app
from tests.exposition_reference import whole_registry

try:  # prometheus-client >= 0.21
    from prometheus_client.aiohttp import make_aiohttp_handler
except ImportError:  # pragma: no cover - older prometheus-client
    make_aiohttp_handler = None  # type: ignore[assignment]


def _say(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def _commands() -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def _serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, HOST, 0).start()
    return runner, int(runner.addresses[0][1])


def _scrape_app(variant: str, series: int) -> tuple[web.Application, bytes]:
    exporter = snapshot_exporter(series)
    body = exporter.exposition.body(openmetrics=False, gzipped=False)
    if variant == "exporter":
        return create_app(exporter), body
    app = web.Application()
    if variant == "baseline":
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        if make_aiohttp_handler is not None:
            handler = make_aiohttp_handler(whole_registry(exporter.exposition))
        else:  # pragma: no cover - older prometheus-client
            from prometheus_client import generate_latest

            registry = whole_registry(exporter.exposition)

            async def handler(request: web.Request) -> web.StreamResponse:
                return web.Response(
                    body=generate_latest(registry), headers={"Content-Type": TEXT_CONTENT_TYPE}
                )

    elif variant == "limit":

        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(body=body, headers={"Content-Type": TEXT_CONTENT_TYPE})

    else:
        raise SystemExit(f"unknown variant {variant!r}")
    app.router.add_get("/metrics", handler)
    return app, body


async def scrape(variant: str, series: int) -> None:
    app, body = _scrape_app(variant, series)
    runner, port = await _serve(app)
    _say(port=port, series=count_series(body), bytes=len(body))
    reader = await _commands()
    while (await reader.readline()).strip() not in (b"quit", b""):
        pass
    await runner.cleanup()


class StallMonitor:
    """The longest the event loop was late to wake a 1 ms sleep."""

    def __init__(self) -> None:
        self.longest = 0.0

    async def run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            self.longest = max(self.longest, time.perf_counter() - before - 0.001)


async def stall(url: str, settings: dict[str, object]) -> None:
    config = exporter_config(url, **settings)
    async with Exporter(config) as exporter:
        freeze_startup_heap()  # as the CLI does
        await exporter.poll_all_once()  # the next poll has a previous one (transitions)
        runner, port = await _serve(create_app(exporter))
        monitor = StallMonitor()
        watching = asyncio.create_task(monitor.run())
        body = exporter.exposition.body(openmetrics=False, gzipped=False)
        _say(port=port, series=count_series(body), bytes=len(body))
        reader = await _commands()
        while True:
            command = (await reader.readline()).strip()
            if command == b"reset":
                monitor.longest = 0.0
                _say(ok=True)
            elif command == b"stats":
                _say(max_stall=monitor.longest)
            elif command == b"poll":
                monitor.longest = 0.0
                started = time.perf_counter()
                await exporter.poll_all_once()
                _say(seconds=time.perf_counter() - started, max_stall=monitor.longest)
            else:
                break
        watching.cancel()
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.servers")
    modes = parser.add_subparsers(dest="mode", required=True)
    scrape_mode = modes.add_parser("scrape")
    scrape_mode.add_argument("--variant", required=True)
    scrape_mode.add_argument("--series", type=int, default=10_000)
    stall_mode = modes.add_parser("stall")
    stall_mode.add_argument("--url", required=True)
    stall_mode.add_argument("--settings", type=json.loads, default={})
    args = parser.parse_args(argv)
    configure_logging("info")  # to stderr, as the exporter logs; stdout is for replies
    if args.mode == "scrape":
        asyncio.run(scrape(args.variant, args.series))
    else:
        asyncio.run(stall(args.url, args.settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
