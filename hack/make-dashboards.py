#!/usr/bin/env python3
"""Write the chart's Grafana dashboards (charts/modelops/dashboards/*.json) from one description.

Run `python3 hack/make-dashboards.py` after editing a panel here; `--check` fails when the files
differ from what this script writes (tests/chart/test_dashboards.py runs it). Every expression
selects by the `$namespace`/`$modeldeployment` variables or aggregates over them: no namespace is
written into a dashboard. The datasource is the `${datasource}` variable.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "charts" / "modelops" / "dashboards"
SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
MD = 'namespace="$namespace", modeldeployment="$modeldeployment"'
RATE = "$__rate_interval"
Obj = dict[str, Any]


def _datasource_variable() -> Obj:
    return {
        "name": "datasource",
        "label": "Prometheus",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
    }


def _query_variable(name: str, label: str, query: str, include_all: bool = False) -> Obj:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-variable"},
        "refresh": 2,
        "sort": 1,
        "includeAll": include_all,
        "multi": False,
        "current": {},
        "hide": 0,
    }


NAMESPACE_VARIABLE = _query_variable(
    "namespace", "Namespace", "label_values(modelops_deployment_phase, namespace)"
)
DEPLOYMENT_VARIABLE = _query_variable(
    "modeldeployment",
    "ModelDeployment",
    'label_values(modelops_deployment_phase{namespace="$namespace"}, modeldeployment)',
)


def panel(
    title: str,
    description: str,
    targets: list[tuple[str, str]],
    unit: str = "short",
    kind: str = "timeseries",
    stack: bool = False,
) -> Obj:
    """A panel: (expression, legend) targets; ids and positions are set by `dashboard`."""
    custom: Obj = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never"}
    if stack:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": {"unit": unit, "custom": custom}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": expr,
                "legendFormat": legend,
            }
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def dashboard(
    uid: str, title: str, variables: list[Obj], panels: list[Obj], annotations: list[Obj]
) -> Obj:
    """The dashboard: panels laid out two per row, numbered from 1."""
    laid = []
    for index, each in enumerate(panels):
        laid.append(
            {
                "id": index + 1,
                "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
                **each,
            }
        )
    builtin = {
        "builtIn": 1,
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts",
        "type": "dashboard",
    }
    return {
        "uid": uid,
        "title": title,
        "tags": ["modelops"],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "time": {"from": "now-3h", "to": "now"},
        "refresh": "30s",
        "timezone": "",
        "templating": {"list": [_datasource_variable(), *variables]},
        "annotations": {"list": [builtin, *annotations]},
        "panels": laid,
    }


def annotation(name: str, expr: str, color: str, title: str) -> Obj:
    """An annotation from a Prometheus expression (a point where it has a sample)."""
    return {
        "name": name,
        "datasource": DATASOURCE,
        "enable": True,
        "iconColor": color,
        "expr": expr,
        "step": "15s",
        "titleFormat": title,
        "tagKeys": "reason",
        "useValueForTime": False,
    }


def fleet() -> Obj:
    """Every ModelDeployment and the operator itself."""
    return dashboard(
        "modelops-fleet",
        "modelops / Fleet",
        [],
        [
            panel(
                "ModelDeployments by phase",
                "How many ModelDeployments are in each phase (the leader's view).",
                [("sum by (phase) (modelops_deployment_phase)", "{{phase}}")],
                stack=True,
            ),
            panel(
                "Builds waiting or failed",
                "ModelDeployments whose engine is not built, by the EngineBuilt condition's reason "
                "(Building, Publishing: running or queued; anything else: failed).",
                [
                    (
                        'count by (reason) (modelops_deployment_condition_since_timestamp_seconds{condition="EngineBuilt", status="False"})',
                        "{{reason}}",
                    ),
                    (
                        'sum(increase(modelops_builds_total{event="failed"}[1h]))',
                        "failed in the last hour",
                    ),
                ],
            ),
            panel(
                "Rollouts and rollbacks per hour",
                "Revisions created and rolled back over the last hour.",
                [
                    ("sum(increase(modelops_rollouts_total[1h]))", "rollouts"),
                    ("sum(increase(modelops_rollbacks_total[1h]))", "rollbacks"),
                ],
            ),
            panel(
                "Leader",
                "Replicas holding the leader Lease: exactly 1 is healthy.",
                [("sum(modelops_leader)", "leaders"), ("count(modelops_leader)", "replicas")],
            ),
            panel(
                "Reconcile latency",
                "p50 and p99 of one reconcile (read, decide, apply), and reconciles by result.",
                [
                    (
                        f"histogram_quantile(0.5, sum by (le) (rate(modelops_reconcile_duration_seconds_bucket[{RATE}])))",
                        "p50",
                    ),
                    (
                        f"histogram_quantile(0.99, sum by (le) (rate(modelops_reconcile_duration_seconds_bucket[{RATE}])))",
                        "p99",
                    ),
                ],
                unit="s",
            ),
            panel(
                "Reconciles by result",
                "Reconciles per second: ok, gone, invalid (a spec to fix), error (retried).",
                [(f"sum by (result) (rate(modelops_reconciles_total[{RATE}]))", "{{result}}")],
                unit="ops",
            ),
            panel(
                "Watch age",
                "Seconds since the newest ModelDeployment watch event (any replica).",
                [("time() - max(modelops_last_watch_event_timestamp_seconds > 0)", "watch age")],
                unit="s",
            ),
            panel(
                "Cache and API requests",
                "Children in the watch-fed cache, and Kubernetes API requests per second.",
                [
                    ("sum by (pod) (modelops_cached_objects)", "cached objects {{pod}}"),
                    (
                        f"sum by (pod) (rate(modelops_api_requests[{RATE}]))",
                        "API requests/s {{pod}}",
                    ),
                ],
            ),
        ],
        [],
    )


def one_deployment() -> Obj:
    """One ModelDeployment: what its clients got, per revision, and what its pods did."""
    events = f'changes(modelops_deployment_events_total{{{MD}, reason=~"REASONS"}}[1m]) > 0'
    return dashboard(
        "modelops-modeldeployment",
        "modelops / ModelDeployment",
        [NAMESPACE_VARIABLE, DEPLOYMENT_VARIABLE],
        [
            panel(
                "Client requests per revision (router)",
                "Requests per second clients sent through the router, by the revision that answered.",
                [
                    (
                        f"sum by (revision) (rate(modelops_router_responses_total{{{MD}}}[{RATE}]))",
                        "r{{revision}}",
                    )
                ],
                unit="reqps",
            ),
            panel(
                "Client errors per revision (router)",
                "4xx and 5xx answers and gRPC calls that failed inside an HTTP 200, per second.",
                [
                    (
                        f'sum by (revision, class) (rate(modelops_router_responses_total{{{MD}, class=~"4xx|5xx|other"}}[{RATE}]))',
                        "r{{revision}} {{class}}",
                    ),
                    (
                        f"sum by (revision) (rate(modelops_router_grpc_errors_total{{{MD}}}[{RATE}]))",
                        "r{{revision}} gRPC non-OK",
                    ),
                ],
                unit="reqps",
            ),
            panel(
                "Error ratio per revision vs maxErrorRate",
                "Failed / all client requests per revision, and the ModelDeployment's own limit.",
                [
                    (
                        f'sum by (revision) (rate(modelops_router_responses_total{{{MD}, class=~"4xx|5xx|other"}}[{RATE}])) / sum by (revision) (rate(modelops_router_responses_total{{{MD}}}[{RATE}]))',
                        "r{{revision}}",
                    ),
                    (f"max(modelops_deployment_max_error_rate{{{MD}}})", "maxErrorRate"),
                ],
                unit="percentunit",
            ),
            panel(
                "Latency per revision",
                "Triton's p50 and p99 request latency per revision (its summaries), and the "
                "router's average response time per protocol (HAProxy keeps no percentiles).",
                [
                    (
                        f'max by (revision, quantile) (nv_inference_request_summary_us{{{MD}, quantile=~"0.5|0.99"}}) / 1e6',
                        "r{{revision}} p{{quantile}}",
                    ),
                    (
                        f'avg by (proxy) (haproxy_backend_response_time_average_seconds{{{MD}, proxy=~"http|grpc"}})',
                        "router avg {{proxy}}",
                    ),
                ],
                unit="s",
            ),
            panel(
                "Revision weights",
                "Percent of requests each revision gets: wanted by the operator, and run by the routers.",
                [
                    (
                        f"max by (revision) (modelops_deployment_weight{{{MD}}})",
                        "wanted r{{revision}}",
                    ),
                    (f"min by (revision) (modelops_router_weight{{{MD}}})", "router r{{revision}}"),
                ],
                unit="percent",
            ),
            panel(
                "Inferences per second per pod",
                "Inferences (batch items) per second, per Triton pod.",
                [
                    (
                        f"sum by (revision, pod) (rate(nv_inference_count{{{MD}}}[{RATE}]))",
                        "r{{revision}} {{pod}}",
                    )
                ],
                unit="ops",
            ),
            panel(
                "Queue and compute time per pod",
                "Average time a request waited in Triton's queue, and its compute time, per pod.",
                [
                    (
                        f"sum by (pod) (rate(nv_inference_queue_duration_us{{{MD}}}[{RATE}])) / sum by (pod) (rate(nv_inference_request_success{{{MD}}}[{RATE}])) / 1e6",
                        "queue {{pod}}",
                    ),
                    (
                        f"sum by (pod) (rate(nv_inference_compute_infer_duration_us{{{MD}}}[{RATE}])) / sum by (pod) (rate(nv_inference_request_success{{{MD}}}[{RATE}])) / 1e6",
                        "compute {{pod}}",
                    ),
                ],
                unit="s",
            ),
            panel(
                "Batch size per pod",
                "Inferences per model execution: how full Triton's dynamic batches are.",
                [
                    (
                        f"sum by (pod) (rate(nv_inference_count{{{MD}}}[{RATE}])) / sum by (pod) (rate(nv_inference_exec_count{{{MD}}}[{RATE}]))",
                        "{{pod}}",
                    )
                ],
            ),
            panel(
                "Replicas and the autoscaler",
                "Serving and ready pods, maxReplicas, and the scaling metric against its target.",
                [
                    (f"max(modelops_deployment_replicas{{{MD}}})", "replicas"),
                    (f"max(modelops_deployment_ready_replicas{{{MD}}})", "ready"),
                    (f"max(modelops_deployment_max_replicas{{{MD}}})", "maxReplicas"),
                    (
                        f"max by (metric) (modelops_deployment_scaling_observed{{{MD}}}) / max by (metric) (modelops_deployment_scaling_target{{{MD}}})",
                        "{{metric}} / target",
                    ),
                ],
            ),
            panel(
                "Phase",
                "The ModelDeployment's phase over time.",
                [(f"max by (phase) (modelops_deployment_phase{{{MD}}})", "{{phase}}")],
                stack=True,
            ),
        ],
        [
            annotation(
                "Rollout steps",
                events.replace("REASONS", "RevisionCreated|StepPromoted|TrafficShifted|RolledOut"),
                "blue",
                "{{reason}}",
            ),
            annotation(
                "Rollbacks",
                events.replace("REASONS", "RolledBack|RolloutFailed"),
                "red",
                "{{reason}}",
            ),
            annotation("Scaling", events.replace("REASONS", "Scaled"), "green", "{{reason}}"),
        ],
    )


def builds() -> Obj:
    """Engine builds: stages, the accuracy gate, profiled figures, the store."""
    scope = 'namespace=~"$namespace"'
    return dashboard(
        "modelops-builds",
        "modelops / Builds",
        [
            _query_variable(
                "namespace",
                "Namespace",
                "label_values(modelops_deployment_phase, namespace)",
                include_all=True,
            )
        ],
        [
            panel(
                "Build stage durations",
                "Seconds each stage of the serving engine's build took (its engine.json).",
                [
                    (
                        f"max by (modeldeployment, engine, stage) (modelops_engine_stage_seconds{{{scope}}})",
                        "{{modeldeployment}} {{stage}}",
                    )
                ],
                unit="s",
                kind="bargauge",
            ),
            panel(
                "Accuracy gate error",
                "Largest absolute and relative error of the engine against the fp32 reference.",
                [
                    (
                        f"max by (modeldeployment, engine, kind) (modelops_engine_accuracy_error{{{scope}}})",
                        "{{modeldeployment}} {{engine}} {{kind}}",
                    )
                ],
                kind="bargauge",
            ),
            panel(
                "Profiled latency per engine",
                "The builder's p50 and p99 at the opt batch, per engine key.",
                [
                    (
                        f"max by (modeldeployment, engine, quantile) (modelops_engine_profiled_latency_seconds{{{scope}}})",
                        "{{modeldeployment}} {{engine}} p{{quantile}}",
                    )
                ],
                unit="s",
                kind="bargauge",
            ),
            panel(
                "Profiled throughput per engine",
                "The builder's inferences per second at the opt batch, per engine key.",
                [
                    (
                        f"max by (modeldeployment, engine) (modelops_engine_profiled_throughput{{{scope}}})",
                        "{{modeldeployment}} {{engine}}",
                    )
                ],
                unit="ops",
                kind="bargauge",
            ),
            panel(
                "Store hits vs builds",
                "Revisions created and builds started in the last hour: a revision without a build "
                "was served from the store.",
                [
                    ("sum(increase(modelops_rollouts_total[1h]))", "revisions created"),
                    ('sum(increase(modelops_builds_total{event="started"}[1h]))', "builds started"),
                    (
                        'clamp_min(sum(increase(modelops_rollouts_total[1h])) - sum(increase(modelops_builds_total{event="started"}[1h])), 0)',
                        "served from the store",
                    ),
                ],
            ),
            panel(
                "Builds by outcome",
                "Build Jobs started, succeeded and failed per hour.",
                [("sum by (event) (increase(modelops_builds_total[1h]))", "{{event}}")],
            ),
        ],
        [],
    )


def rendered() -> dict[str, str]:
    """File name -> JSON text of each dashboard."""
    boards = {
        "fleet.json": fleet(),
        "modeldeployment.json": one_deployment(),
        "builds.json": builds(),
    }
    return {
        name: json.dumps(board, indent=2, sort_keys=True) + "\n" for name, board in boards.items()
    }


def main(argv: list[str]) -> int:
    """Write the files, or with --check say which differ."""
    stale = []
    for name, text in rendered().items():
        path = OUT / name
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"stale dashboards (run python3 hack/make-dashboards.py): {', '.join(stale)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
