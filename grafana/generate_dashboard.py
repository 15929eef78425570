"""The VIAS overview dashboard as code, built with Grafana's foundation SDK.

    python grafana/generate_dashboard.py          # writes grafana/dashboards/vias-overview.json
    python grafana/generate_dashboard.py --check  # exits 1 when the committed JSON differs

Change the dashboard here, never in the JSON: regenerate and commit both
(tests/deploy/test_grafana.py fails while they differ). The panels are listed row by row
below (`ROWS`); each is one call of `stat`, `timeseries`, `table` or `bargauge`, which fill in
what every panel of that kind shares (the data source variable, legends, reductions), so a
panel states only its title, description, place on the grid, unit and PromQL.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from grafana_foundation_sdk.builders import bargauge as bargauge_builder
from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.builders import dashboard as dashboard_builder
from grafana_foundation_sdk.builders import prometheus as prometheus_builder
from grafana_foundation_sdk.builders import stat as stat_builder
from grafana_foundation_sdk.builders import table as table_builder
from grafana_foundation_sdk.builders import timeseries as timeseries_builder
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus as prometheus_model

OUTPUT = Path(__file__).resolve().parent / "dashboards" / "vias-overview.json"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
REF_IDS = "ABCDEFGH"

# (value from which the colour holds, colour); the first step's value is None (-infinity)
Thresholds = Sequence[tuple[float | None, str]]
RED_FROM_ONE: Thresholds = ((None, "green"), (1, "red"))
ORANGE_FROM_ONE: Thresholds = ((None, "green"), (1, "orange"))
QUOTA_USE: Thresholds = ((None, "green"), (0.8, "orange"), (0.9, "red"))


@dataclass(frozen=True)
class Query:
    """One PromQL target: `instant` for stats, bar gauges and tables, else a range."""

    expr: str
    legend: str = "__auto"
    instant: bool = False
    table: bool = False


def series(expr: str, legend: str) -> Query:
    return Query(expr, legend)


def instant(expr: str, legend: str) -> Query:
    return Query(expr, legend, instant=True)


def tabular(expr: str) -> Query:
    return Query(expr, instant=True, table=True)


def _target(query: Query, ref_id: str) -> prometheus_builder.Dataquery:
    target = (
        prometheus_builder.Dataquery()
        .datasource(DATASOURCE)
        .ref_id(ref_id)
        .expr(query.expr)
        .legend_format(query.legend)
        .format(
            prometheus_model.PromQueryFormat.TABLE
            if query.table
            else prometheus_model.PromQueryFormat.TIME_SERIES
        )
    )
    return target.instant() if query.instant else target.range()


def _thresholds(steps: Thresholds) -> dashboard_builder.ThresholdsConfig:
    return (
        dashboard_builder.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=color) for value, color in steps])
    )


def _last_value() -> common_builder.ReduceDataOptions:
    return common_builder.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)


Grid = tuple[int, int, int, int]  # x, y, w, h

PanelBuilder = (
    stat_builder.Panel | timeseries_builder.Panel | table_builder.Panel | bargauge_builder.Panel
)


P = TypeVar("P", bound=PanelBuilder)


def _common(
    panel: P,
    id: int,
    title: str,
    description: str,
    grid: Grid,
    unit: str,
    queries: Sequence[Query],
) -> P:
    x, y, w, h = grid
    panel.id(id).title(title).description(description).datasource(DATASOURCE)
    panel.grid_pos(model.GridPos(x=x, y=y, w=w, h=h)).unit(unit)
    for query, ref_id in zip(queries, REF_IDS, strict=False):
        panel.with_target(_target(query, ref_id))
    return panel


def stat(
    id: int,
    title: str,
    description: str,
    grid: Grid,
    unit: str,
    queries: Sequence[Query],
    thresholds: Thresholds,
    mappings: dict[str, str] | None = None,
) -> stat_builder.Panel:
    """A big number on a background coloured by its thresholds, with its recent course."""
    panel = _common(stat_builder.Panel(), id, title, description, grid, unit, queries)
    panel.color_scheme(dashboard_builder.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
    panel.thresholds(_thresholds(thresholds))
    if mappings:
        panel.mappings(
            [
                model.ValueMap(
                    options={v: model.ValueMappingResult(text=t) for v, t in mappings.items()}
                )
            ]
        )
    return (
        panel.color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.AREA)
        .text_mode(common.BigValueTextMode.AUTO)
        .reduce_options(_last_value())
    )


def timeseries(
    id: int, title: str, description: str, grid: Grid, unit: str, queries: Sequence[Query]
) -> timeseries_builder.Panel:
    """Lines over time, a table legend on the right with each series' last value."""
    panel = _common(timeseries_builder.Panel(), id, title, description, grid, unit, queries)
    return panel.legend(
        common_builder.VizLegendOptions()
        .calcs(["lastNotNull"])
        .display_mode(common.LegendDisplayMode.TABLE)
        .placement(common.LegendPlacement.RIGHT)
        .show_legend(True)
    ).tooltip(
        common_builder.VizTooltipOptions()
        .mode(common.TooltipDisplayMode.MULTI)
        .sort(common.SortOrder.DESCENDING)
    )


def table(
    id: int,
    title: str,
    description: str,
    grid: Grid,
    unit: str,
    queries: Sequence[Query],
    hide_value: bool = True,
    rename: dict[str, str] | None = None,
) -> table_builder.Panel:
    """One row per series (instant query, table format); the Time column (and by default the
    value, which only says the series exists) hidden, columns renamed."""
    panel = _common(table_builder.Panel(), id, title, description, grid, unit, queries)
    options: dict[str, object] = {
        "excludeByName": {"Time": True, "Value": True} if hide_value else {"Time": True}
    }
    if rename:
        options["renameByName"] = rename
    organize = model.DataTransformerConfig(id_val="organize", options=options)
    return panel.with_transformation(organize)


def bargauge(
    id: int,
    title: str,
    description: str,
    grid: Grid,
    unit: str,
    queries: Sequence[Query],
    thresholds: Thresholds | None = None,
    min: float | None = None,
    max: float | None = None,
) -> bargauge_builder.Panel:
    """Horizontal gradient bars of each series' last value."""
    panel = _common(bargauge_builder.Panel(), id, title, description, grid, unit, queries)
    if thresholds is not None:
        panel.color_scheme(dashboard_builder.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
        panel.thresholds(_thresholds(thresholds))
    if min is not None:
        panel.min(min)
    if max is not None:
        panel.max(max)
    return (
        panel.display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .orientation(common.VizOrientation.HORIZONTAL)
        .reduce_options(_last_value())
    )


def row(id: int, title: str, y: int) -> dashboard_builder.Row:
    return dashboard_builder.Row(title).id(id).grid_pos(model.GridPos(x=0, y=y, w=24, h=1))


def datasource_variable() -> dashboard_builder.DatasourceVariable:
    return (
        dashboard_builder.DatasourceVariable("datasource")
        .label("Data source")
        .description("Prometheus that scrapes vias-exporter.")
        .type("prometheus")
        .hide(model.VariableHide.DONT_HIDE)
        .multi(False)
        .include_all(False)
        .regex("")
    )


def filter_variable(
    name: str, label: str, description: str, query: str
) -> dashboard_builder.QueryVariable:
    """A label's values, several at once or All (`.*`, so that `=~"$name"` matches all)."""
    return (
        dashboard_builder.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(DATASOURCE)
        .query({"query": query, "refId": f"{name}-var"})
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .hide(model.VariableHide.DONT_HIDE)
        .regex("")
    )


# a row and the panels under it (rows stay open: the panels follow the row on the dashboard)
Section = tuple[dashboard_builder.Row, list[PanelBuilder]]

# The rows, top to bottom. Grid: x, y, w, h; 24 columns wide; y counts from the top of the
# dashboard, so a panel added or grown moves the rows below it down.


def problem_states_at_a_glance() -> Section:
    return (
        row(1, "Problem states at a glance", 0),
        [
            stat(
                2,
                "ABNORMAL",
                "Jobs in state ABNORMAL now (alert: VIASJobAbnormal).",
                grid=(0, 1, 4, 4),
                unit="short",
                queries=[
                    instant(
                        (
                            'sum(vias_tasks{project_id=~"$project", source=~"$source", '
                            'vendor=~"$vendor", algorithm=~"$algorithm", '
                            'deployment=~"$deployment", state=~"ABNORMAL"})'
                        ),
                        "ABNORMAL",
                    )
                ],
                thresholds=RED_FROM_ONE,
            ),
            stat(
                3,
                "FAILED",
                "Jobs in state FAILED now, old and new (alert on new ones: VIASJobFailed).",
                grid=(4, 1, 4, 4),
                unit="short",
                queries=[
                    instant(
                        (
                            'sum(vias_tasks{project_id=~"$project", source=~"$source", '
                            'vendor=~"$vendor", algorithm=~"$algorithm", '
                            'deployment=~"$deployment", state=~"FAILED"})'
                        ),
                        "FAILED",
                    )
                ],
                thresholds=RED_FROM_ONE,
            ),
            stat(
                4,
                "LACK_OF_RESOURCES",
                "Jobs waiting for compute resources (alert: VIASJobLackOfResources).",
                grid=(8, 1, 4, 4),
                unit="short",
                queries=[
                    instant(
                        (
                            'sum(vias_tasks{project_id=~"$project", source=~"$source", '
                            'vendor=~"$vendor", algorithm=~"$algorithm", '
                            'deployment=~"$deployment", state=~"LACK_OF_RESOURCES"})'
                        ),
                        "LACK_OF_RESOURCES",
                    )
                ],
                thresholds=ORANGE_FROM_ONE,
            ),
            stat(
                5,
                "CREATE/START_FAILED",
                "Jobs that could not be created or started (alert: VIASJobCreateOrStartFailed).",
                grid=(12, 1, 4, 4),
                unit="short",
                queries=[
                    instant(
                        (
                            'sum(vias_tasks{project_id=~"$project", source=~"$source", '
                            'vendor=~"$vendor", algorithm=~"$algorithm", '
                            'deployment=~"$deployment", state=~"CREATE_FAILED|START_FAILED"})'
                        ),
                        "CREATE/START_FAILED",
                    )
                ],
                thresholds=ORANGE_FROM_ONE,
            ),
            stat(
                6,
                "RUNNING",
                "Jobs running now.",
                grid=(16, 1, 4, 4),
                unit="short",
                queries=[
                    instant(
                        (
                            'sum(vias_tasks{project_id=~"$project", source=~"$source", '
                            'vendor=~"$vendor", algorithm=~"$algorithm", '
                            'deployment=~"$deployment", state="RUNNING"})'
                        ),
                        "RUNNING",
                    )
                ],
                thresholds=((None, "blue"),),
            ),
            stat(
                7,
                "Batch tasks with problems",
                (
                    "Batch tasks with at least one member ABNORMAL, FAILED, "
                    "CREATE_FAILED or START_FAILED (alert: VIASBatchTaskProblems)."
                ),
                grid=(20, 1, 4, 4),
                unit="short",
                queries=[
                    instant(
                        (
                            "count((sum by (project_id, batch_task_id) "
                            '(vias_batch_task_tasks{project_id=~"$project", '
                            'state=~"ABNORMAL|FAILED|CREATE_FAILED|START_FAILED"}) > 0) * on '
                            "(project_id, batch_task_id) group_left max by (project_id, "
                            'batch_task_id) (vias_batch_task_info{project_id=~"$project", '
                            'vendor=~"$vendor", algorithm=~"$algorithm", '
                            'deployment=~"$deployment"})) or vector(0)'
                        ),
                        "batch tasks",
                    )
                ],
                thresholds=ORANGE_FROM_ONE,
            ),
        ],
    )


def jobs() -> Section:
    return (
        row(8, "Jobs", 5),
        [
            timeseries(
                9,
                "Jobs by state",
                (
                    "Number of jobs in each state over time (vias_tasks). Do not "
                    "enable both tasks and infer_tasks sources: they list the same "
                    "jobs."
                ),
                grid=(0, 6, 12, 9),
                unit="short",
                queries=[
                    series(
                        (
                            'sum by (state) (vias_tasks{project_id=~"$project", '
                            'source=~"$source", vendor=~"$vendor", algorithm=~"$algorithm", '
                            'deployment=~"$deployment"}) > 0'
                        ),
                        "{{state}}",
                    )
                ],
            ),
            timeseries(
                10,
                "State transitions",
                (
                    "State changes seen between polls, by target state (increase of "
                    "vias_task_state_transitions_total). DELETED = job gone; a new "
                    "job counts from NONE to its first state."
                ),
                grid=(12, 6, 12, 9),
                unit="short",
                queries=[
                    series(
                        (
                            "sum by (to_state) (increase(vias_task_state_transitions_total{"
                            'project_id=~"$project", source=~"$source", vendor=~"$vendor", '
                            'algorithm=~"$algorithm", '
                            'deployment=~"$deployment"}[$__rate_interval]))'
                        ),
                        "to {{to_state}}",
                    )
                ],
            ),
            table(
                11,
                "Problem jobs",
                (
                    "Every job in a problem state (ABNORMAL, FAILED, "
                    "LACK_OF_RESOURCES, CREATE_FAILED, START_FAILED), from "
                    "vias_problem_task_info (capped per project by the exporter)."
                ),
                grid=(0, 15, 24, 9),
                unit="none",
                queries=[
                    tabular(
                        "max by (project_id, source, task_id, task_name, state, "
                        "error_code, vendor, algorithm, deployment) "
                        '(vias_problem_task_info{project_id=~"$project", '
                        'source=~"$source", vendor=~"$vendor", algorithm=~"$algorithm", '
                        'deployment=~"$deployment"})'
                    )
                ],
            ),
        ],
    )


def breakdowns() -> Section:
    return (
        row(12, "Breakdowns", 24),
        [
            bargauge(
                13,
                "Jobs by vendor",
                "Jobs per vendor (the job's company), all states.",
                grid=(0, 25, 8, 8),
                unit="short",
                queries=[
                    instant(
                        (
                            'sum by (vendor) (vias_tasks{project_id=~"$project", '
                            'source=~"$source", vendor=~"$vendor", algorithm=~"$algorithm", '
                            'deployment=~"$deployment"})'
                        ),
                        "{{vendor}}",
                    )
                ],
            ),
            bargauge(
                14,
                "Jobs by algorithm",
                "Jobs per algorithm (the job's title), all states.",
                grid=(8, 25, 8, 8),
                unit="short",
                queries=[
                    instant(
                        (
                            'sum by (algorithm) (vias_tasks{project_id=~"$project", '
                            'source=~"$source", vendor=~"$vendor", algorithm=~"$algorithm", '
                            'deployment=~"$deployment"})'
                        ),
                        "{{algorithm}}",
                    )
                ],
            ),
            bargauge(
                15,
                "Jobs by deployment",
                "Jobs in the cloud and on edge nodes, all states.",
                grid=(16, 25, 8, 8),
                unit="short",
                queries=[
                    instant(
                        (
                            'sum by (deployment) (vias_tasks{project_id=~"$project", '
                            'source=~"$source", vendor=~"$vendor", algorithm=~"$algorithm", '
                            'deployment=~"$deployment"})'
                        ),
                        "{{deployment}}",
                    )
                ],
            ),
            timeseries(
                16,
                "Problem jobs by vendor",
                "Jobs in a problem state, per vendor, over time.",
                grid=(0, 33, 8, 8),
                unit="short",
                queries=[
                    series(
                        (
                            'sum by (vendor) (vias_tasks{project_id=~"$project", '
                            'source=~"$source", vendor=~"$vendor", algorithm=~"$algorithm", '
                            'deployment=~"$deployment", '
                            'state=~"ABNORMAL|FAILED|LACK_OF_RESOURCES|CREATE_FAILED|START_FAILED"})'
                        ),
                        "{{vendor}}",
                    )
                ],
            ),
            timeseries(
                17,
                "Problem jobs by algorithm",
                "Jobs in a problem state, per algorithm, over time.",
                grid=(8, 33, 8, 8),
                unit="short",
                queries=[
                    series(
                        (
                            'sum by (algorithm) (vias_tasks{project_id=~"$project", '
                            'source=~"$source", vendor=~"$vendor", algorithm=~"$algorithm", '
                            'deployment=~"$deployment", '
                            'state=~"ABNORMAL|FAILED|LACK_OF_RESOURCES|CREATE_FAILED|START_FAILED"})'
                        ),
                        "{{algorithm}}",
                    )
                ],
            ),
            timeseries(
                18,
                "Problem jobs by deployment",
                "Jobs in a problem state, cloud vs edge, over time.",
                grid=(16, 33, 8, 8),
                unit="short",
                queries=[
                    series(
                        (
                            'sum by (deployment, state) (vias_tasks{project_id=~"$project", '
                            'source=~"$source", vendor=~"$vendor", algorithm=~"$algorithm", '
                            'deployment=~"$deployment", '
                            'state=~"ABNORMAL|FAILED|LACK_OF_RESOURCES|CREATE_FAILED|START_FAILED"})'
                        ),
                        "{{deployment}} {{state}}",
                    )
                ],
            ),
        ],
    )


def batch_tasks() -> Section:
    return (
        row(19, "Batch tasks", 41),
        [
            table(
                20,
                "Batch tasks",
                (
                    "Members of each batch task by state (vias_batch_task_tasks, "
                    "states with members only), with vendor and algorithm from "
                    "vias_batch_task_info."
                ),
                grid=(0, 42, 14, 9),
                unit="short",
                queries=[
                    tabular(
                        "sum by (project_id, batch_task_name, vendor, algorithm, "
                        "deployment, state) ((vias_batch_task_tasks{"
                        'project_id=~"$project"} > 0) * on (project_id, batch_task_id) '
                        "group_left (vendor, algorithm, deployment) vias_batch_task_info{"
                        'project_id=~"$project", vendor=~"$vendor", '
                        'algorithm=~"$algorithm", deployment=~"$deployment"})'
                    )
                ],
                hide_value=False,
            ),
            timeseries(
                21,
                "Batch task members in problem states",
                "Members ABNORMAL, FAILED, CREATE_FAILED or START_FAILED, per batch task.",
                grid=(14, 42, 10, 9),
                unit="short",
                queries=[
                    series(
                        (
                            "sum by (batch_task_name) (vias_batch_task_tasks{"
                            'project_id=~"$project", '
                            'state=~"ABNORMAL|FAILED|CREATE_FAILED|START_FAILED"} * on '
                            "(project_id, batch_task_id) group_left max by (project_id, "
                            'batch_task_id) (vias_batch_task_info{project_id=~"$project", '
                            'vendor=~"$vendor", algorithm=~"$algorithm", '
                            'deployment=~"$deployment"}))'
                        ),
                        "{{batch_task_name}}",
                    )
                ],
            ),
        ],
    )


def why_are_my_jobs_failing() -> Section:
    return (
        row(34, "Why are my jobs failing", 51),
        [
            table(
                35,
                "Why are my jobs failing",
                (
                    "Each problem job (vias_problem_task_info) beside what it stands "
                    "on that is itself in trouble: its camera "
                    "(vias_video_source_problem_info: offline, abnormal or a quality "
                    "problem), its edge pool or a node of it "
                    "(vias_problem_edge_pool_info, vias_problem_edge_node_info), its "
                    "algorithm service (vias_problem_algorithm_service_info). One "
                    "row per (job, cause); a job none of them explains has cause "
                    "'job'. Fix the cause first: its alert inhibits the jobs' "
                    "alerts. Causes show only for the lists the exporter polls "
                    "(video_sources, edge_pools, algorithm_services) and for jobs "
                    "whose listing names them."
                ),
                grid=(0, 52, 24, 10),
                unit="none",
                queries=[
                    tabular(
                        "max by (project_id, task_name, task_id, state, error_code, "
                        "vendor, algorithm, cause, video_source_name, edge_pool_id, "
                        "service_id) (\n"
                        '  label_replace(vias_problem_task_info{project_id=~"$project", '
                        'source=~"$source", vendor=~"$vendor", algorithm=~"$algorithm", '
                        'deployment=~"$deployment"} * on (project_id, video_source_name) '
                        "group_left () max by (project_id, video_source_name) "
                        '(vias_video_source_problem_info{project_id=~"$project", '
                        'video_source_name!=""}), "cause", "camera", "", "")\n'
                        "  or label_replace(vias_problem_task_info{"
                        'project_id=~"$project", source=~"$source", vendor=~"$vendor", '
                        'algorithm=~"$algorithm", deployment=~"$deployment"} * on '
                        "(project_id, edge_pool_id) group_left () max by (project_id, "
                        "edge_pool_id) (vias_problem_edge_pool_info{"
                        'project_id=~"$project", edge_pool_id!=""}), "cause", "edge '
                        'pool", "", "")\n'
                        "  or label_replace(vias_problem_task_info{"
                        'project_id=~"$project", source=~"$source", vendor=~"$vendor", '
                        'algorithm=~"$algorithm", deployment=~"$deployment"} * on '
                        "(project_id, edge_pool_id) group_left () max by (project_id, "
                        "edge_pool_id) (vias_problem_edge_node_info{"
                        'project_id=~"$project", edge_pool_id!=""}), "cause", "edge '
                        'node", "", "")\n'
                        "  or label_replace(vias_problem_task_info{"
                        'project_id=~"$project", source=~"$source", vendor=~"$vendor", '
                        'algorithm=~"$algorithm", deployment=~"$deployment"} * on '
                        "(project_id, service_id) group_left () max by (project_id, "
                        "service_id) (vias_problem_algorithm_service_info{"
                        'project_id=~"$project", service_id!=""}), "cause", "algorithm '
                        'service", "", "")\n'
                        "  or label_replace(vias_problem_task_info{"
                        'project_id=~"$project", source=~"$source", vendor=~"$vendor", '
                        'algorithm=~"$algorithm", deployment=~"$deployment"} unless on '
                        "(project_id, video_source_name) max by (project_id, "
                        "video_source_name) (vias_video_source_problem_info{"
                        'project_id=~"$project", video_source_name!=""}) unless on '
                        "(project_id, edge_pool_id) max by (project_id, edge_pool_id) "
                        '(vias_problem_edge_pool_info{project_id=~"$project", '
                        'edge_pool_id!=""}) unless on (project_id, edge_pool_id) max by '
                        "(project_id, edge_pool_id) (vias_problem_edge_node_info{"
                        'project_id=~"$project", edge_pool_id!=""}) unless on '
                        "(project_id, service_id) max by (project_id, service_id) "
                        '(vias_problem_algorithm_service_info{project_id=~"$project", '
                        'service_id!=""}), "cause", "job (nothing it stands on is known '
                        'to be down)", "", "")\n'
                        ")"
                    )
                ],
                rename={
                    "cause": "cause",
                    "video_source_name": "camera",
                    "edge_pool_id": "edge pool",
                    "service_id": "algorithm service",
                },
            ),
            stat(
                36,
                "Problem jobs explained by a camera, pool or service",
                (
                    "Problem jobs whose camera, edge pool (or one of its nodes) or "
                    "algorithm service is itself in trouble."
                ),
                grid=(0, 62, 8, 4),
                unit="short",
                queries=[
                    instant(
                        (
                            "count(count by (project_id, source, task_id) "
                            '(vias_problem_task_info{project_id=~"$project", '
                            'source=~"$source", vendor=~"$vendor", algorithm=~"$algorithm", '
                            'deployment=~"$deployment"} and on (project_id, '
                            "video_source_name) max by (project_id, video_source_name) "
                            '(vias_video_source_problem_info{project_id=~"$project", '
                            'video_source_name!=""}) or vias_problem_task_info{'
                            'project_id=~"$project", source=~"$source", vendor=~"$vendor", '
                            'algorithm=~"$algorithm", deployment=~"$deployment"} and on '
                            "(project_id, edge_pool_id) max by (project_id, edge_pool_id) "
                            '(vias_problem_edge_pool_info{project_id=~"$project", '
                            'edge_pool_id!=""}) or vias_problem_task_info{'
                            'project_id=~"$project", source=~"$source", vendor=~"$vendor", '
                            'algorithm=~"$algorithm", deployment=~"$deployment"} and on '
                            "(project_id, edge_pool_id) max by (project_id, edge_pool_id) "
                            '(vias_problem_edge_node_info{project_id=~"$project", '
                            'edge_pool_id!=""}) or vias_problem_task_info{'
                            'project_id=~"$project", source=~"$source", vendor=~"$vendor", '
                            'algorithm=~"$algorithm", deployment=~"$deployment"} and on '
                            "(project_id, service_id) max by (project_id, service_id) "
                            '(vias_problem_algorithm_service_info{project_id=~"$project", '
                            'service_id!=""}))) or vector(0)'
                        ),
                        "Problem jobs explained by a camera, pool or service",
                    )
                ],
                thresholds=RED_FROM_ONE,
            ),
            stat(
                37,
                "Problem jobs on a problem camera",
                (
                    "Problem jobs whose camera (video_source_name) is offline, "
                    "abnormal or has a quality problem."
                ),
                grid=(8, 62, 8, 4),
                unit="short",
                queries=[
                    instant(
                        (
                            'count(vias_problem_task_info{project_id=~"$project", '
                            'source=~"$source", vendor=~"$vendor", algorithm=~"$algorithm", '
                            'deployment=~"$deployment"} and on (project_id, '
                            "video_source_name) max by (project_id, video_source_name) "
                            '(vias_video_source_problem_info{project_id=~"$project", '
                            'video_source_name!=""})) or vector(0)'
                        ),
                        "Problem jobs on a problem camera",
                    )
                ],
                thresholds=RED_FROM_ONE,
            ),
            stat(
                38,
                "Problem jobs on a failed service",
                "Problem jobs whose algorithm service (service_id) is service_failed.",
                grid=(16, 62, 8, 4),
                unit="short",
                queries=[
                    instant(
                        (
                            'count(vias_problem_task_info{project_id=~"$project", '
                            'source=~"$source", vendor=~"$vendor", algorithm=~"$algorithm", '
                            'deployment=~"$deployment"} and on (project_id, service_id) max '
                            "by (project_id, service_id) "
                            '(vias_problem_algorithm_service_info{project_id=~"$project", '
                            'service_id!=""})) or vector(0)'
                        ),
                        "Problem jobs on a failed service",
                    )
                ],
                thresholds=RED_FROM_ONE,
            ),
        ],
    )


def cameras_video_sources() -> Section:
    return (
        row(39, "Cameras (video sources)", 66),
        [
            stat(
                40,
                "Video sources offline or abnormal",
                (
                    "Video sources offline or abnormal now (vias_video_sources); "
                    "VIASVideoSourcesOffline alerts on a share of them."
                ),
                grid=(0, 67, 6, 8),
                unit="short",
                queries=[
                    instant(
                        (
                            'sum(vias_video_sources{project_id=~"$project", '
                            'status=~"offline|abnormal"}) or vector(0)'
                        ),
                        "Video sources offline or abnormal",
                    )
                ],
                thresholds=RED_FROM_ONE,
            ),
            timeseries(
                41,
                "Video sources by status",
                "Video sources by status and access type (vias_video_sources).",
                grid=(6, 67, 9, 8),
                unit="short",
                queries=[
                    series(
                        (
                            "sum by (status, access_type) (vias_video_sources{"
                            'project_id=~"$project"})'
                        ),
                        "{{status}} ({{access_type}})",
                    )
                ],
            ),
            timeseries(
                42,
                "Video source quality problems",
                (
                    "Video sources with each quality problem "
                    "(vias_video_source_quality_problems); a source with two "
                    "problems counts in both."
                ),
                grid=(15, 67, 9, 8),
                unit="short",
                queries=[
                    series(
                        (
                            "sum by (problem) (vias_video_source_quality_problems{"
                            'project_id=~"$project"})'
                        ),
                        "{{problem}}",
                    )
                ],
            ),
            table(
                43,
                "Problem video sources",
                (
                    "Each video source offline, abnormal or with a quality problem "
                    "(vias_video_source_problem_info, capped per project) and the "
                    "number of jobs using it (vias_video_source_problem_tasks)."
                ),
                grid=(0, 75, 16, 9),
                unit="short",
                queries=[
                    tabular(
                        "max by (project_id, video_source_name, video_source_id, status, "
                        "access_type, type, quality_problems) "
                        '(vias_video_source_problem_info{project_id=~"$project"}) * on '
                        "(project_id, video_source_id) group_left () max by (project_id, "
                        "video_source_id) (vias_video_source_problem_tasks{"
                        'project_id=~"$project"})'
                    )
                ],
                hide_value=False,
                rename={"Value": "jobs"},
            ),
            table(
                44,
                "Video groups",
                "Video sources of each group by status (vias_video_group_sources).",
                grid=(16, 75, 8, 9),
                unit="short",
                queries=[
                    tabular(
                        "sum by (project_id, video_group_name, status) "
                        '(vias_video_group_sources{project_id=~"$project"})'
                    )
                ],
                hide_value=False,
                rename={"Value": "sources"},
            ),
        ],
    )


def edge_pools_and_nodes() -> Section:
    return (
        row(45, "Edge pools and nodes", 84),
        [
            timeseries(
                46,
                "Edge pools by state",
                "Edge pools by state (vias_edge_pools).",
                grid=(0, 85, 8, 8),
                unit="short",
                queries=[
                    series('sum by (state) (vias_edge_pools{project_id=~"$project"})', "{{state}}")
                ],
            ),
            timeseries(
                47,
                "Edge nodes by state",
                (
                    "Edge nodes by state (vias_edge_nodes), of the pools whose nodes "
                    "are known (see vias_edge_pools_without_node_details)."
                ),
                grid=(8, 85, 8, 8),
                unit="short",
                queries=[
                    series('sum by (state) (vias_edge_nodes{project_id=~"$project"})', "{{state}}")
                ],
            ),
            timeseries(
                48,
                "Edge node capacity (Running nodes)",
                (
                    "CPU cores, GPUs and NPUs of the Running edge nodes "
                    "(vias_edge_node_cpu_cores, vias_edge_node_gpus, "
                    "vias_edge_node_npus)."
                ),
                grid=(16, 85, 8, 8),
                unit="short",
                queries=[
                    series(
                        'sum(vias_edge_node_cpu_cores{project_id=~"$project", state="Running"})',
                        "CPU cores",
                    ),
                    series(
                        'sum(vias_edge_node_gpus{project_id=~"$project", state="Running"})',
                        "GPUs",
                    ),
                    series(
                        'sum(vias_edge_node_npus{project_id=~"$project", state="Running"})',
                        "NPUs",
                    ),
                ],
            ),
            table(
                49,
                "Problem edge pools",
                "Each edge pool not Running (vias_problem_edge_pool_info, capped per project).",
                grid=(0, 93, 10, 8),
                unit="none",
                queries=[
                    tabular(
                        "max by (project_id, edge_pool_name, edge_pool_id, state) "
                        '(vias_problem_edge_pool_info{project_id=~"$project"})'
                    )
                ],
            ),
            table(
                50,
                "Problem edge nodes",
                (
                    "Each edge node not Running, whatever its state "
                    "(vias_problem_edge_node_info, capped per project)."
                ),
                grid=(10, 93, 14, 8),
                unit="none",
                queries=[
                    tabular(
                        "max by (project_id, edge_pool_name, node_name, node_id, state) "
                        '(vias_problem_edge_node_info{project_id=~"$project"})'
                    )
                ],
            ),
        ],
    )


def algorithm_services_and_quotas() -> Section:
    return (
        row(51, "Algorithm services and quotas", 101),
        [
            timeseries(
                52,
                "Algorithm services by status",
                (
                    "Algorithm services by status (vias_algorithm_services), for the "
                    "vendor and deployment chosen."
                ),
                grid=(0, 102, 8, 8),
                unit="short",
                queries=[
                    series(
                        (
                            "sum by (status) (vias_algorithm_services{"
                            'project_id=~"$project", vendor=~"$vendor", '
                            'deployment=~"$deployment"})'
                        ),
                        "{{status}}",
                    )
                ],
            ),
            table(
                53,
                "Failed algorithm services",
                (
                    "Each algorithm service in service_failed, with its own error "
                    "message (vias_problem_algorithm_service_info, capped per "
                    "project)."
                ),
                grid=(8, 102, 16, 8),
                unit="none",
                queries=[
                    tabular(
                        "max by (project_id, service_name, service_id, vendor, "
                        "deployment, error_msg) (vias_problem_algorithm_service_info{"
                        'project_id=~"$project", vendor=~"$vendor", '
                        'deployment=~"$deployment"})'
                    )
                ],
            ),
            bargauge(
                54,
                "Video source quota used",
                (
                    "Video sources of the project over its quota (vias_video_sources "
                    "/ vias_video_source_quota); VIASVideoSourceQuotaNearlyUsed "
                    "fires at 90%."
                ),
                grid=(0, 110, 12, 6),
                unit="percentunit",
                queries=[
                    instant(
                        (
                            "sum by (project_id) (vias_video_sources{"
                            'project_id=~"$project"}) / on (project_id) '
                            '(vias_video_source_quota{project_id=~"$project"} > 0)'
                        ),
                        "{{project_id}}",
                    )
                ],
                thresholds=QUOTA_USE,
                min=0,
                max=1,
            ),
            bargauge(
                55,
                "Video group quota used",
                (
                    "Video groups of the project over its quota (vias_video_groups / "
                    "vias_video_group_quota); VIASVideoGroupQuotaNearlyUsed fires at "
                    "90%."
                ),
                grid=(12, 110, 12, 6),
                unit="percentunit",
                queries=[
                    instant(
                        (
                            'vias_video_groups{project_id=~"$project"} / on (project_id) '
                            '(vias_video_group_quota{project_id=~"$project"} > 0)'
                        ),
                        "{{project_id}}",
                    )
                ],
                thresholds=QUOTA_USE,
                min=0,
                max=1,
            ),
        ],
    )


def exporter_health() -> Section:
    return (
        row(22, "Exporter health", 116),
        [
            stat(
                23,
                "Exporter up",
                (
                    'Prometheus can scrape the exporter (up{job="vias-exporter"}; '
                    "alert: VIASExporterDown)."
                ),
                grid=(0, 117, 4, 5),
                unit="none",
                queries=[instant('up{job="vias-exporter"}', "{{instance}}")],
                thresholds=((None, "red"), (1, "green")),
                mappings={"0": "DOWN", "1": "UP"},
            ),
            stat(
                24,
                "Sources polled OK",
                "1 when the last poll of the source succeeded (vias_up).",
                grid=(4, 117, 8, 5),
                unit="none",
                queries=[instant('vias_up{project_id=~"$project"}', "{{project_id}} {{source}}")],
                thresholds=((None, "red"), (1, "green")),
            ),
            timeseries(
                25,
                "Time since last successful poll",
                (
                    "Age of the data per source (time() - "
                    "vias_last_success_timestamp_seconds; alert: VIASSourceStale "
                    "above 15 min)."
                ),
                grid=(12, 117, 12, 5),
                unit="s",
                queries=[
                    series(
                        'time() - vias_last_success_timestamp_seconds{project_id=~"$project"}',
                        "{{project_id}} {{source}}",
                    )
                ],
            ),
            timeseries(
                26,
                "Poll duration (p95)",
                "95th percentile of the wall time of a full poll (all pages) per source.",
                grid=(0, 122, 8, 8),
                unit="s",
                queries=[
                    series(
                        (
                            "histogram_quantile(0.95, sum by (le, source) "
                            "(rate(vias_poll_duration_seconds_bucket{"
                            'project_id=~"$project"}[$__rate_interval])))'
                        ),
                        "{{source}}",
                    )
                ],
            ),
            timeseries(
                27,
                "Items per poll",
                (
                    "Unique jobs or batch tasks listed by the last successful poll "
                    "(vias_poll_items)."
                ),
                grid=(8, 122, 8, 8),
                unit="short",
                queries=[
                    series('vias_poll_items{project_id=~"$project"}', "{{project_id}} {{source}}")
                ],
            ),
            timeseries(
                28,
                "Poll errors by reason",
                (
                    "Failed polls per second by reason (auth, throttled, "
                    "server_error, ...); 0 when none. Alerts: VIASAuthFailing, "
                    "VIASSourceStale."
                ),
                grid=(16, 122, 8, 8),
                unit="ops",
                queries=[
                    series(
                        (
                            "sum by (source, reason) (rate(vias_poll_errors_total{"
                            'project_id=~"$project"}[$__rate_interval])) or sum by (source) '
                            '(vias_up{project_id=~"$project"}) * 0'
                        ),
                        "{{source}} {{reason}}",
                    )
                ],
            ),
            timeseries(
                29,
                "API requests by code",
                (
                    "HTTP requests per second to VIAS and IAM by status code "
                    "(timeout / connection_error when no answer). Each retry counts."
                ),
                grid=(0, 130, 8, 8),
                unit="reqps",
                queries=[
                    series(
                        (
                            "sum by (code) (rate(vias_api_requests_total{"
                            'project_id=~"$project"}[$__rate_interval]))'
                        ),
                        "{{code}}",
                    )
                ],
            ),
            timeseries(
                30,
                "API error ratio",
                (
                    "Share of requests per endpoint with a 5xx, a timeout or no "
                    "connection (alert: VIASAPIErrors above 10%)."
                ),
                grid=(8, 130, 8, 8),
                unit="percentunit",
                queries=[
                    series(
                        (
                            "(sum by (endpoint) (rate(vias_api_requests_total{"
                            'project_id=~"$project", '
                            'code=~"5..|timeout|connection_error"}[$__rate_interval])) or '
                            "sum by (endpoint) (rate(vias_api_requests_total{"
                            'project_id=~"$project"}[$__rate_interval])) * 0) / sum by '
                            "(endpoint) (rate(vias_api_requests_total{"
                            'project_id=~"$project"}[$__rate_interval]))'
                        ),
                        "{{endpoint}}",
                    )
                ],
            ),
            timeseries(
                31,
                "Throttled requests (429)",
                (
                    "Requests per second answered with HTTP 429 by the API gateway, "
                    "per endpoint (alert: VIASAPIThrottled)."
                ),
                grid=(16, 130, 8, 8),
                unit="reqps",
                queries=[
                    series(
                        (
                            "sum by (endpoint) (rate(vias_api_requests_total{"
                            'project_id=~"$project", code="429"}[$__rate_interval])) or sum '
                            "by (endpoint) (rate(vias_api_requests_total{"
                            'project_id=~"$project"}[$__rate_interval])) * 0'
                        ),
                        "{{endpoint}}",
                    )
                ],
            ),
            timeseries(
                32,
                "API latency (p50, p95)",
                "Latency of HTTP requests to VIAS and IAM per endpoint.",
                grid=(0, 138, 12, 8),
                unit="s",
                queries=[
                    series(
                        (
                            "histogram_quantile(0.95, sum by (le, endpoint) "
                            "(rate(vias_api_request_duration_seconds_bucket{"
                            'project_id=~"$project"}[$__rate_interval])))'
                        ),
                        "p95 {{endpoint}}",
                    ),
                    series(
                        (
                            "histogram_quantile(0.5, sum by (le, endpoint) "
                            "(rate(vias_api_request_duration_seconds_bucket{"
                            'project_id=~"$project"}[$__rate_interval])))'
                        ),
                        "p50 {{endpoint}}",
                    ),
                ],
            ),
            timeseries(
                33,
                "IAM token lifetime left",
                (
                    "Time until the cached IAM token expires (password login only; "
                    "empty with a static token or AK/SK). Alert: "
                    "VIASAuthTokenExpiringSoon below 30 min."
                ),
                grid=(12, 138, 12, 8),
                unit="s",
                queries=[
                    series(
                        (
                            "vias_auth_token_expiry_timestamp_seconds{"
                            'project_id=~"$project"} - time()'
                        ),
                        "{{project_id}}",
                    )
                ],
            ),
            timeseries(
                56,
                "API budget against demand",
                (
                    "Per account, summed over the replicas: the requests a second its "
                    "sources ask for at their configured intervals (demand), what the "
                    "exporter may send (budget: rate_limit_per_second, lowered after 429s) "
                    "and what it sends. Demand above 0.8 x budget stretches intervals "
                    "(alert: VIASPollingBehindSchedule; runbook: sizing)."
                ),
                grid=(0, 146, 24, 8),
                unit="reqps",
                queries=[
                    series(
                        "sum by (account) (vias_account_demand_requests_per_second)",
                        "demand {{account}}",
                    ),
                    series(
                        "sum by (account) (vias_account_budget_requests_per_second)",
                        "budget {{account}}",
                    ),
                    series(
                        "sum by (account) (rate(vias_account_requests_total[$__rate_interval]))",
                        "sent {{account}}",
                    ),
                ],
            ),
        ],
    )


SECTIONS = (
    problem_states_at_a_glance,
    jobs,
    breakdowns,
    batch_tasks,
    why_are_my_jobs_failing,
    cameras_video_sources,
    edge_pools_and_nodes,
    algorithm_services_and_quotas,
    exporter_health,
)


def variables() -> list[cogbuilder.Builder[model.VariableModel]]:
    return [
        datasource_variable(),
        filter_variable(
            "project", "Project", "Huawei Cloud project id.", "label_values(vias_up, project_id)"
        ),
        filter_variable(
            "source",
            "Source",
            (
                "List endpoint of the jobs: tasks and infer_tasks list the same "
                "jobs, pick one if both are enabled."
            ),
            'label_values(vias_tasks{project_id=~"$project"}, source)',
        ),
        filter_variable(
            "vendor",
            "Vendor",
            "Algorithm vendor (the job's company).",
            'label_values(vias_tasks{project_id=~"$project"}, vendor)',
        ),
        filter_variable(
            "algorithm",
            "Algorithm",
            "Algorithm name (the job's title).",
            'label_values(vias_tasks{project_id=~"$project", vendor=~"$vendor"}, algorithm)',
        ),
        filter_variable(
            "deployment",
            "Deployment",
            "cloud or edge.",
            'label_values(vias_tasks{project_id=~"$project"}, deployment)',
        ),
    ]


TITLE = "VIAS overview"
DESCRIPTION = (
    "Huawei Cloud VIAS video analysis jobs and the health of vias-exporter. "
    "Metrics: docs/metrics.md; alerts: docs/runbook.md."
)


def build() -> model.Dashboard:
    board = (
        dashboard_builder.Dashboard(TITLE)
        .uid("vias-overview")
        .description(DESCRIPTION)
        .tags(["vias", "huawei-cloud"])
        .editable()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .refresh("1m")
        .time("now-6h", "now")
        .timezone("browser")
        .fiscal_year_start_month(0)
        .live_now(False)
        .version(1)
        .links([])
        .annotation(
            dashboard_builder.AnnotationQuery()
            .name("Annotations & Alerts")
            .datasource(model.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
            .built_in(True)
            .enable(True)
            .hide(True)
            .icon_color("rgba(0, 211, 255, 1)")
            .type("dashboard")
        )
    )
    for variable in variables():
        board.with_variable(variable)
    for section in SECTIONS:
        row_builder, panels = section()
        board.with_row(row_builder)
        for panel in panels:
            board.with_panel(panel)
    return board.build()


def render() -> str:
    """The dashboard's JSON as committed: the SDK's serialisation, indented, newline-ended."""
    return json.dumps(build(), cls=JSONEncoder, indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="default: %(default)s")
    args = parser.parse_args(argv)
    generated = render()
    if not args.check:
        args.output.write_text(generated, encoding="utf-8")
        return 0
    committed = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
    if committed == generated:
        return 0
    sys.stderr.writelines(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            generated.splitlines(keepends=True),
            f"{args.output} (committed)",
            f"{args.output} (generated)",
        )
    )
    print(f"{args.output} differs: run `python grafana/generate_dashboard.py`", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
