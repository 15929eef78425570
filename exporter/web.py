"""The HTTP face of the exporter: /metrics, a landing page, health and readiness."""

from __future__ import annotations

import html
import time

from aiohttp import web

from exporter import __version__
from exporter.collector import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE
from exporter.reload import Reloader
from exporter.service import Exporter
from exporter.settings import ConfigError
from exporter.snapshot import Snapshot
from exporter.web_limit_counts import LIMIT_COUNTS_KEY, limit_counts
from exporter.webconfig import BasicAuth, WebConfig
from exporter.webserver import probes_past_the_cap

EXPORTER_KEY = web.AppKey("exporter", Exporter)
TELEMETRY_PATH_KEY = web.AppKey("telemetry_path", str)
RELOADER_KEY = web.AppKey("reloader", Reloader)
# A slow reader holds at most a slice in asyncio's buffer; a smaller slice costs a scrape
# more waits for the socket (256 KiB: a quarter fewer scrapes a second of a 1.4 MB body).
WRITE_SLICE_BYTES = 1 << 20


def _weights(header: str) -> dict[str, float]:
    """`type;param=x;q=0.5, other` -> {type: q}, lower-cased; a bad q counts as 0."""
    weights: dict[str, float] = {}
    for part in header.split(","):
        name, *params = (piece.strip() for piece in part.split(";"))
        if not name:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        weights[name.lower()] = max(q, weights.get(name.lower(), 0.0))
    return weights


def _wants_openmetrics(accept: str) -> bool:
    """OpenMetrics when the client weighs it above the text format (q-values honoured)."""
    weights = _weights(accept)
    openmetrics = weights.get("application/openmetrics-text", 0.0)
    text = max(weights.get("text/plain", 0.0), weights.get("*/*", 0.0), weights.get("text/*", 0.0))
    return openmetrics > 0 and openmetrics >= text


def _wants_gzip(accept_encoding: str) -> bool:
    weights = _weights(accept_encoding)
    return weights.get("gzip", weights.get("*", 0.0)) > 0


async def metrics(request: web.Request) -> web.StreamResponse:
    exporter = request.app[EXPORTER_KEY]
    openmetrics = _wants_openmetrics(request.headers.get("Accept", ""))
    gzipped = _wants_gzip(request.headers.get("Accept-Encoding", ""))
    body = await exporter.exposition.serve(openmetrics=openmetrics, gzipped=gzipped)
    response = web.StreamResponse(
        headers={
            "Content-Type": OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE,
            # Caches keep one answer per format and encoding.
            "Vary": "Accept, Accept-Encoding",
        },
    )
    if gzipped:
        response.headers["Content-Encoding"] = "gzip"
    response.content_length = len(body)
    await response.prepare(request)
    # The shared body in slices, each sent before the next: a slow reader holds a slice
    # in its socket's buffer, not a copy of the whole body (asyncio copies what it buffers).
    whole = memoryview(body)
    try:
        for start in range(0, len(body), WRITE_SLICE_BYTES):
            await response.write(whole[start : start + WRITE_SLICE_BYTES])
    except ConnectionError:  # the scraper left: aiohttp ends the response quietly
        return response
    await response.write_eof()
    return response


async def healthy(request: web.Request) -> web.Response:
    return web.Response(text="OK\n")


async def ready(request: web.Request) -> web.Response:
    if request.app[EXPORTER_KEY].ready:
        return web.Response(text="Ready\n")
    return web.Response(status=503, text="Not ready: first poll round still running\n")


async def reload(request: web.Request) -> web.Response:
    """`POST /-/reload`, with --web.enable-lifecycle only (as Prometheus): 200 once the new
    configuration runs, 500 naming what is wrong with it (the running one stays)."""
    reloader = request.app.get(RELOADER_KEY)
    if reloader is None:
        return web.Response(status=403, text="Lifecycle API is not enabled.\n")
    try:
        await reloader.reload()
    except ConfigError as error:
        return web.Response(status=500, text=f"failed to reload config: {error}\n")
    return web.Response(text="OK\n")


def _target_rows(snapshot: Snapshot) -> str:
    rows = []
    now = time.time()
    for state in snapshot.sources.values():
        if not state.polled:
            result = "not polled yet"
        elif state.up:
            result = "ok"
        else:
            result = f"failed: {state.last_error or ''}"
        age = f"{now - state.last_success:.0f}s ago" if state.last_success is not None else "never"
        cells = (state.project_id, state.source, f"{state.interval_seconds:g}s", result, age)
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return "\n".join(rows)


def _plan_rows(exporter: Exporter) -> str:
    rows = []
    for plan in exporter.plans():
        cells = (
            plan.account,
            f"{plan.budget:.2f}/s of {plan.configured:.2f}/s",
            f"{plan.demand:.2f}/s",
            f"{plan.stretch:.2f}" + (" (over budget)" if plan.over_budget else ""),
            str(plan.sources),
            f"{plan.sent} ({plan.throttled} throttled)",
        )
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return "\n".join(rows)


async def landing(request: web.Request) -> web.Response:
    exporter = request.app[EXPORTER_KEY]
    path = html.escape(request.app[TELEMETRY_PATH_KEY])
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>VIAS exporter</title></head>
<body>
<h1>VIAS exporter {html.escape(__version__)}</h1>
<p><a href="{path}">Metrics</a> · <a href="/-/healthy">Health</a> ·
<a href="/-/ready">Readiness</a></p>
<h2>API budget plan</h2>
<table border="1" cellpadding="4">
<tr><th>account</th><th>budget</th><th>demand</th><th>interval stretch</th><th>sources</th>
<th>requests sent</th></tr>
{_plan_rows(exporter)}
</table>
<h2>Targets</h2>
<table border="1" cellpadding="4">
<tr><th>project</th><th>source</th><th>interval</th><th>last poll</th><th>last success</th></tr>
{_target_rows(exporter.store.current)}
</table>
</body></html>
"""
    return web.Response(text=page, content_type="text/html")


def create_app(
    exporter: Exporter,
    *,
    telemetry_path: str = "/metrics",
    web_config: WebConfig | None = None,
    reloader: Reloader | None = None,
) -> web.Application:
    """`reloader` enables the lifecycle API (`POST /-/reload`)."""
    users = web_config.basic_auth_users if web_config else None
    counts = limit_counts(exporter.telemetry)
    middlewares = [probes_past_the_cap] + ([BasicAuth(users, counts).middleware] if users else [])
    app = web.Application(middlewares=middlewares)
    app[LIMIT_COUNTS_KEY] = counts
    app[EXPORTER_KEY] = exporter
    app[TELEMETRY_PATH_KEY] = telemetry_path
    if reloader is not None:
        app[RELOADER_KEY] = reloader
    app.router.add_route("POST", "/-/reload", reload)
    app.router.add_route("PUT", "/-/reload", reload)
    app.router.add_get(telemetry_path, metrics)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    if telemetry_path != "/":
        app.router.add_get("/", landing)
    return app
