"""The layer contract of docs/architecture.md, checked over the source (`make lint` runs
this file): a module imports only modules of the layers below its own, never a sibling of
its layer nor anything above, so the next circle fails CI. Every import counts, those under
`TYPE_CHECKING` and inside functions too: a circle hidden that way is still a circle.

A package named in the table (`exporter.lists`, `exporter.simulator`) is one unit: its
modules import each other freely, but no list module imports the registry
(`exporter.lists` itself): no list reads another list's data through it.

An equivalent of import-linter's layers contract in ~100 lines, rather than a new test
dependency (import-linter brings grimp, a compiled extension, click and rich) and the lock
files re-compiled on every branch that adds one.

Break → failing test (each seen red once): `from exporter.transport import Transport`
under TYPE_CHECKING in lists/base.py, as before issue 19 →
test_every_import_points_down_the_layers; the circle settings -> lists -> transport ->
settings of that code → test_the_checker_finds_the_circle_issue_19_removed; `from
exporter.lists import REGISTRY` in settings.py → test_every_import_points_down_the_layers.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Top first. Modules of one layer are independent of each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("exporter.__main__",),
    ("exporter.cli",),
    ("exporter.web", "exporter.healthcheck"),
    ("exporter.reload", "exporter.webconfig"),
    ("exporter.service",),
    (
        "exporter.poller",
        "exporter.collector",
        "exporter.discovery",
        "exporter.accounts",
        "exporter.sharding",
        "exporter.simulator",
    ),
    ("exporter.details", "exporter.paginator", "exporter.snapshot", "exporter.shared_bodies"),
    (
        "exporter.transport",
        "exporter.exposition_cache",
        "exporter.metric_filter",
        "exporter.webserver",
    ),
    (
        "exporter.auth",
        "exporter.label_values",
        "exporter.request_peek",
        "exporter.web_limit_counts",
        "exporter.acceptor",
    ),
    ("exporter.exchange", "exporter.signing"),
    ("exporter.telemetry", "exporter.logs"),
    ("exporter.own_metrics",),
    ("exporter.plan_metrics",),
    ("exporter.budget",),
    # Side by side: settings checks list names against the registry its caller hands in.
    ("exporter.lists", "exporter.settings"),
    ("exporter.models", "exporter.config_rules", "exporter.pacing"),
    ("exporter.errors",),
    ("exporter",),  # the package: __version__
)
REGISTRY = "exporter.lists"


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(root: Path, package: str = "exporter") -> dict[str, set[str]]:
    """Every module of `package` under `root` and the modules of `package` it imports
    (anywhere in the file)."""
    graph: dict[str, set[str]] = {}
    for path in sorted((root / package).rglob("*.py")):
        name = module_name(path, root)
        found = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                # `from exporter import __version__` is the package; `from exporter.lists
                # import base` names the module `base` or a name of the package.
                found.add(node.module)
        graph[name] = {target for target in found if target.split(".")[0] == package}
    return graph


def unit_of(module: str, layers: tuple[tuple[str, ...], ...] = LAYERS) -> str | None:
    """The entry of the table `module` belongs to: itself or its package (the longest)."""
    entries = [entry for layer in layers for entry in layer]
    owners = [e for e in entries if module == e or (module.startswith(e + ".") and e != "exporter")]
    if module == "exporter":
        return "exporter"
    return max(owners, key=len, default=None)


def violations(
    graph: Mapping[str, set[str]], layers: tuple[tuple[str, ...], ...] = LAYERS
) -> Iterator[str]:
    rank = {entry: depth for depth, layer in enumerate(layers) for entry in layer}
    for module, targets in sorted(graph.items()):
        source = unit_of(module, layers)
        if source is None:
            yield f"{module}: in no layer (add it to LAYERS in tests/test_layers.py)"
            continue
        for target in sorted(targets):
            unit = unit_of(target, layers)
            if unit is None:
                yield f"{module} imports {target}, in no layer"
            elif unit == source:
                if target == REGISTRY and module != REGISTRY and source == REGISTRY:
                    yield f"{module} imports the registry {REGISTRY}"
            elif rank[unit] <= rank[source]:
                where = "a sibling" if rank[unit] == rank[source] else "a layer above"
                yield f"{module} imports {target}, {where} ({unit})"


def test_every_import_points_down_the_layers() -> None:
    assert list(violations(imports(ROOT))) == []


def test_every_module_is_in_a_layer_once() -> None:
    entries = [entry for layer in LAYERS for entry in layer]
    assert len(entries) == len(set(entries))
    assert all(unit_of(module) for module in imports(ROOT))


def test_the_checker_finds_the_circle_issue_19_removed() -> None:
    """The imports before issue 19: settings -> lists (registry) -> lists.jobs ->
    transport (under TYPE_CHECKING) -> settings; and a list reading the registry. Settings
    no longer reads the registry either: it is handed in (`ListChoices`)."""
    graph = {
        "exporter.settings": {"exporter.lists"},
        "exporter.lists.jobs": {"exporter.transport", "exporter.lists.base"},
        "exporter.lists.tasks": {"exporter.lists"},
        "exporter.transport": {"exporter.settings", "exporter.auth"},
        "exporter.poller": {"exporter.collector"},
    }
    assert list(violations(graph)) == [
        "exporter.lists.jobs imports exporter.transport, a layer above (exporter.transport)",
        "exporter.lists.tasks imports the registry exporter.lists",
        "exporter.poller imports exporter.collector, a sibling (exporter.collector)",
        "exporter.settings imports exporter.lists, a sibling (exporter.lists)",
    ]
