"""Peak RSS of the exporter's web server under slow scrapers of a big body (issue 21, item 8).

    python -m bench.slow_readers [--series 150000] [--readers 150] [--waves 3]
    python -m bench.slow_readers --exporter-tree /tmp/old   # another version's exporter/

A server process serves /metrics of a snapshot of about `--series` series (the real web
app and server). `--readers` slow scrapers each read 16 KiB every 100 ms for
`--wave-seconds`, then all abort (RST), `--waves` times; the server's RSS is sampled every
250 ms, and `/-/healthy` asked every 500 ms from a process of its own (as a kubelet: from
this one, the load generated here would delay the probe). `--storm N` then sends N scrapes
at once; `--probe-pause S` has the probe send its request S seconds after it connects
(a loaded kubelet: accepted before its request arrives). A missed probe prints why (its
status line, or the error). `--exporter-tree DIR` runs the server on the `exporter/`
package in DIR, e.g. the version before the fix: `git archive <commit> exporter | tar -x
-C DIR`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.fixtures import HOST

ROOT = Path(__file__).resolve().parent.parent
REQUEST = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n"
READ_BYTES = 16 << 10
READ_EVERY_SECONDS = 0.1
SAMPLE_EVERY_SECONDS = 0.25


async def _serve(series: int, plain: bool) -> None:
    """The server process: the exporter's app on a free port, until stdin closes."""
    from aiohttp import web

    from bench.fixtures import snapshot_exporter
    from exporter.web import create_app

    exporter = snapshot_exporter(series)
    body = exporter.exposition.body(openmetrics=False, gzipped=False)
    app = create_app(exporter)
    if plain:  # a version before the web server limits (exporter/webserver.py)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, HOST, 0).start()
        port = int(runner.addresses[0][1])
    else:
        from exporter.webserver import WebLimits, start_site

        runner, site = await start_site(app, HOST, 0, WebLimits())  # the defaults
        port = site.port
    print(json.dumps({"port": port, "bytes": len(body)}), flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await runner.cleanup()


def _rss_bytes(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in bytes."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return (int(fields["VmRSS"].split()[0]) << 10, int(fields["VmHWM"].split()[0]) << 10)


async def _slow_reader(port: int, until: float) -> int:
    """Reads slowly until `until`, then aborts (RST); returns the bytes read."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, READ_BYTES)
    sock.setblocking(False)
    read = 0
    try:
        await loop.sock_connect(sock, (HOST, port))
        await loop.sock_sendall(sock, REQUEST)
        while loop.time() < until:
            try:
                chunk = await asyncio.wait_for(
                    loop.sock_recv(sock, READ_BYTES), until - loop.time()
                )
            except TimeoutError:
                break
            if not chunk:
                break
            read += len(chunk)
            await asyncio.sleep(READ_EVERY_SECONDS)
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    return read


async def _sample(pid: int, stop: asyncio.Event, samples: list[int]) -> None:
    while not stop.is_set():
        samples.append(_rss_bytes(pid)[0])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY_SECONDS)


async def _fast_scrape(
    port: int, path: str = "/metrics", connected: float = 0.0, pause: float = 0.0
) -> bytes:
    """The answer to one request on a new connection, sent `pause` seconds after the
    connection is made; `connected` (when given) is the time for the connection to be
    made, past which TimeoutError says so."""
    connecting = asyncio.open_connection(HOST, port)
    try:
        reader, writer = await (
            asyncio.wait_for(connecting, connected) if connected else connecting
        )
    except TimeoutError as error:
        raise TimeoutError("connect") from error
    if pause:
        await asyncio.sleep(pause)
    request = REQUEST.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    writer.write(request.replace(b"/metrics", path.encode()))
    answer = await reader.read()
    writer.close()
    return answer


Probe = float | str  # a probe's latency, or why it failed


async def _probe_health(
    port: int, stop: asyncio.Event, probes: list[Probe], pause: float = 0.0
) -> None:
    """/-/healthy on a new connection every 500 ms, as a probe: its latency, or why it
    did not answer 200 within 5 s (a probe's timeout)."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        started = loop.time()
        try:
            answer = await asyncio.wait_for(_fast_scrape(port, "/-/healthy", 4.99, pause), 5)
            status = answer[:12].decode(errors="replace") or "closed unanswered"
        except (OSError, TimeoutError) as error:
            status = f"{type(error).__name__} {error}".strip()
        probes.append(loop.time() - started if status == "HTTP/1.1 200" else status)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def _probe_until_stdin_closes(port: int, pause: float) -> None:
    """The probe process: its latencies as a JSON list on stdout once stdin closes."""
    stop = asyncio.Event()
    probes: list[Probe] = []
    prober = asyncio.create_task(_probe_health(port, stop, probes, pause))
    await asyncio.to_thread(sys.stdin.read)
    stop.set()
    await prober
    print(json.dumps(probes), flush=True)


@contextlib.asynccontextmanager
async def _probing(port: int, pause: float = 0.0) -> AsyncIterator[list[Probe]]:
    """`_probe_health` in a process of its own, as a kubelet: probing from this one, the
    load it generates would delay the probe's own connect, request and timer."""
    probe = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "bench.slow_readers", "--probe-port", str(port)],
        *["--probe-pause", str(pause)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    probes: list[Probe] = []
    try:
        yield probes
    finally:
        out, _ = await asyncio.wait_for(probe.communicate(b""), 60)
        probes.extend(json.loads(out))


def _health(probes: list[Probe]) -> str:
    answered = [value for value in probes if isinstance(value, float)]
    slowest = f"slowest {max(answered) * 1000:.0f} ms" if answered else "none answered"
    missed = Counter(value for value in probes if isinstance(value, str))
    why = "".join(f"; {count} x {reason}" for reason, count in sorted(missed.items()))
    return f"{len(answered)}/{len(probes)} answered, {slowest}{why}"


async def _storm(port: int, scrapes: int) -> int:
    """`scrapes` scrapes at once, each read whole; returns how many got a 200."""

    async def one() -> bool:
        try:
            return (await asyncio.wait_for(_fast_scrape(port), 120)).startswith(b"HTTP/1.1 200")
        except (OSError, TimeoutError):
            return False

    return sum(await asyncio.gather(*(one() for _ in range(scrapes))))


async def _measure(pid: int, port: int, args: argparse.Namespace) -> dict[str, Any]:
    await _fast_scrape(port)  # the body joined once, as after the first scrape
    idle = _rss_bytes(pid)[0]
    samples: list[int] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample(pid, stop, samples))
    loop = asyncio.get_running_loop()
    read = 0
    async with _probing(port) as health:
        for _ in range(args.waves):
            until = loop.time() + args.wave_seconds
            wave = [_slow_reader(port, until) for _ in range(args.readers)]
            read += sum(await asyncio.gather(*wave))
    stop.set()
    await sampler
    storm_health: list[Probe] = []
    answered = 0
    storm_seconds = 0.0
    if args.storm:
        async with _probing(port, args.probe_pause) as storm_health:
            started = loop.time()
            answered = await _storm(port, args.storm)
            storm_seconds = loop.time() - started
    await asyncio.sleep(args.settle_seconds)  # what the aborted scrapes left behind
    await _fast_scrape(port)
    after, high_water = _rss_bytes(pid)
    return {
        "idle": idle,
        "peak": max([*samples, high_water]),
        "after": after,
        "read": read,
        "health": health,
        "storm_health": storm_health,
        "storm_answered": answered,
        "storm_seconds": storm_seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.slow_readers")
    parser.add_argument("--series", type=int, default=150_000)
    parser.add_argument("--readers", type=int, default=150)
    parser.add_argument("--waves", type=int, default=3)
    parser.add_argument("--wave-seconds", type=float, default=10.0)
    parser.add_argument("--settle-seconds", type=float, default=3.0)
    parser.add_argument("--storm", type=int, default=0, help="then this many scrapes at once")
    parser.add_argument("--exporter-tree", type=Path, help="a directory holding exporter/")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--probe-pause",
        type=float,
        default=0.0,
        help="in the storm, the probe sends its request this long after it connects",
    )
    parser.add_argument("--probe-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe_port:
        asyncio.run(_probe_until_stdin_closes(args.probe_port, args.probe_pause))
        return 0
    if args.serve:
        asyncio.run(_serve(args.series, plain=args.exporter_tree is not None))
        return 0
    path = [str(args.exporter_tree.resolve())] if args.exporter_tree else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*path, str(ROOT)])}
    command = [sys.executable, "-m", "bench.slow_readers", "--serve", "--series", str(args.series)]
    command += ["--exporter-tree", str(args.exporter_tree)] if args.exporter_tree else []
    started = time.monotonic()
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd="/"
    ) as server:
        assert server.stdout is not None and server.stdin is not None
        hello = json.loads(server.stdout.readline())
        figures = asyncio.run(_measure(server.pid, int(hello["port"]), args))
        server.stdin.close()
        server.wait(timeout=60)
    mib = 1 << 20
    version = str(args.exporter_tree) if args.exporter_tree else "this tree"
    print(f"exporter: {version}; {time.monotonic() - started:.0f} s")
    print(
        "| body | readers x waves | RSS idle | peak RSS | RSS after the aborts | read "
        "| /-/healthy probes |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {hello['bytes'] / mib:.1f} MiB | {args.readers} x {args.waves} "
        f"| {figures['idle'] / mib:.0f} MiB | {figures['peak'] / mib:.0f} MiB "
        f"| {figures['after'] / mib:.0f} MiB | {figures['read'] / mib:.0f} MiB "
        f"| {_health(figures['health'])} |"
    )
    if args.storm:
        print(
            f"\n{args.storm} scrapes at once, over {figures['storm_seconds']:.1f} s: "
            f"{figures['storm_answered']:.0f} answered 200; "
            f"/-/healthy probes meanwhile: {_health(figures['storm_health'])}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
