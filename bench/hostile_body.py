"""Peak RSS of `vias-exporter --once` against a hostile answer body, bounded and not.

    python -m bench.hostile_body            # prints a markdown table (docs/reliability.md)

Each run is a fresh exporter process polling one project's `tasks` from a server process
(this module with `--serve`) that answers with one of:

- `endless`: a 200 whose JSON body never ends (items, forever, as fast as loopback goes);
- `page-200MB`: one valid JSON page of 200 MB with its Content-Length;
- `page-200MB-chunked`: the same page without a length (chunked), as a stream would be.

Each case runs with the default `max_response_bytes` (16 MiB) and with the bound out of
the way (8 GiB: the code before the bound read whatever came). Peak RSS is the
exporter's own (`wait4`), not the server's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from bench.fixtures import free_port
from exporter.config_rules import DEFAULT_MAX_RESPONSE_BYTES

PAGE_BYTES = 200 * 1000 * 1000
CHUNK = 1 << 20
KINDS = ("endless", "page-200MB", "page-200MB-chunked")
UNBOUNDED = 8 << 30
TIMEOUT_SECONDS = 10.0


def _job_chunk() -> bytes:
    item = {"id": "job-0", "state": "RUNNING", "company": "v", "title": "a", "type": "0"}
    one = json.dumps(item).encode() + b","
    return one * (CHUNK // len(one))


async def _answer(request: web.Request) -> web.StreamResponse:
    kind = request.app["kind"]
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    head = b'{"count": 1, "tasks": [{"id": "job-0", "state": "RUNNING"}], "pad": "'
    tail = b'"}'
    if kind == "page-200MB":
        response.content_length = PAGE_BYTES
    await response.prepare(request)
    try:
        if kind == "endless":
            await response.write(b'{"count": 1, "tasks": [')
            chunk = _job_chunk()
            while True:
                await response.write(chunk)
        await response.write(head)
        padding = PAGE_BYTES - len(head) - len(tail)
        block = b"x" * CHUNK
        while padding > 0:
            await response.write(block[: min(CHUNK, padding)])
            padding -= CHUNK
        await response.write(tail)
        await response.write_eof()
    except ConnectionError:
        pass
    return response


def serve(kind: str, port: int) -> None:
    app = web.Application()
    app["kind"] = kind
    app.router.add_get("/v2/{project_id}/tasks", _answer)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _wait_for(port: int) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("the hostile server did not start")


def run_case(kind: str, bound: int, directory: Path) -> tuple[float, float, str]:
    """Peak RSS (MB), seconds and the poll's outcome of one `--once` run."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.hostile_body", "--serve", kind, "--port", str(port)]
    )
    try:
        _wait_for(port)
        config = directory / f"{kind}-{bound}.yml"
        config.write_text(
            json.dumps(
                {
                    "global": {
                        "max_response_bytes": bound,
                        "max_retries": 0,
                        "request_timeout_seconds": TIMEOUT_SECONDS,
                    },
                    "targets": [
                        {
                            "project_id": "p1",
                            "endpoint": f"http://127.0.0.1:{port}",
                            "auth_token": "bench",
                            "sources": ["tasks"],
                        }
                    ],
                }
            )
        )
        started = time.monotonic()
        exporter = subprocess.Popen(
            [sys.executable, "-m", "exporter", "--config.file", str(config), "--once"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert exporter.stdout is not None
        body = exporter.stdout.read()
        _, status, usage = os.wait4(exporter.pid, 0)
        exporter.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - started
        return usage.ru_maxrss / 1024, seconds, _outcome(body)
    finally:
        server.terminate()
        server.wait()


def _outcome(body: bytes) -> str:
    for line in body.decode().splitlines():
        if line.startswith("vias_poll_errors_total{") and 'project_id="p1"' in line:
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            return f"failed: {reason}"
    return "up" if 'vias_up{project_id="p1",source="tasks"} 1.0' in body.decode() else "?"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hostile_body")
    parser.add_argument("--serve", choices=KINDS)
    parser.add_argument("--port", type=int)
    parser.add_argument("--kinds", default=",".join(KINDS))
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port)
        return 0
    print("| answer | max_response_bytes | peak RSS [MB] | seconds | poll |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as directory:
        for kind in args.kinds.split(","):
            for bound in (DEFAULT_MAX_RESPONSE_BYTES, UNBOUNDED):
                rss, seconds, outcome = run_case(kind, bound, Path(directory))
                label = f"{bound >> 20} MiB" + (" (unbounded)" if bound == UNBOUNDED else "")
                print(f"| {kind} | {label} | {rss:.1f} | {seconds:.1f} | {outcome} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
