"""What one reconcile decides from: the children the k8s layer observed, and the context."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..api import MetricsStatus
from ..settings import Settings
from .analysis import Analysis
from .build_queue import BuildLoad
from .idle import Activity
from .scale_recommend import ScaleDecision
from .traffic import RouterReport


@dataclass(frozen=True)
class ObserveKeys:
    """What the k8s layer must read besides the children: two store entries, the routes."""

    desired: str | None  # the engine key the spec wants
    serving: str | None  # the engine key of the revision serving now
    gateway: bool = False  # read HTTPRoutes and GRPCRoutes (GatewayAPI traffic mode)


@dataclass(frozen=True)
class Observed:
    """Children the ModelDeployment controls, as the API server returned them.

    jobs: source Jobs by name (validation Jobs in validation_jobs). messages: the termination
    message a finished Job's pod left (what its program wrote: its summary), by Job name.
    deployments: revision Deployments by name; pods: each one's pods. router, router_config and
    router_pods: the traffic router's Deployment, ConfigMap and pods. configmaps: names of the
    ConfigMaps. services: the Services by name (service: the ModelDeployment's own). routes:
    HTTPRoutes and GRPCRoutes by
    "Kind/name". store_entry and serving_entry: engine.json of the desired and of the serving
    engine key when the store holds a complete entry, else None; store_entry is only ever an
    entry whose MAC the k8s layer verified. store_entry_digest: the sha256 of the engine.json
    found at the desired key (verified or not; the digest pods are pinned to). store_refusal:
    why an entry found at the desired key was refused (its MAC, or files a pod found changed).
    build_jobs: the build Jobs in the operator's namespace whose owner annotation names this
    ModelDeployment. job_pods: the pods of unfinished source and build Jobs, by Job name.
    """

    jobs: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    validation_jobs: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    deployments: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    pods: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)
    configmaps: frozenset[str] = frozenset()
    services: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    service: dict[str, Any] | None = None
    router: dict[str, Any] | None = None
    router_config: dict[str, Any] | None = None
    router_pods: tuple[dict[str, Any], ...] = ()
    routes: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    store_entry: dict[str, Any] | None = None
    serving_entry: dict[str, Any] | None = None
    store_entry_digest: str | None = None
    store_refusal: str | None = None
    build_jobs: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    job_pods: Mapping[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)
    messages: Mapping[str, str] = field(default_factory=dict)
    # Every build's slots: the build Jobs running in the release namespace, and who waits.
    build_load: BuildLoad = field(default_factory=BuildLoad)


@dataclass(frozen=True)
class DecideContext:
    """The clock, the operator settings and what the telemetry task gathered since last time.

    analyses maps a revision number to ONE new canary analysis of it; each is counted once, so
    the caller passes it only to the reconcile that follows the analysis. analysis_enabled says
    that such analyses are being fed: readiness held for one analysisIntervalSeconds then no
    longer advances a canary step on its own. scale is the autoscaler's newest decision (applied
    once, only if it was made against the replica count reconcile still sees); metrics is the
    newest status.metrics (None: keep the old one). router is what the router pods last said
    they run (None: not known), so a revision leaves only once no router sends it a request.
    activity is what the router said about requests (scale to zero: idle, held, served).
    """

    now: datetime
    settings: Settings
    analyses: Mapping[int, Analysis] = field(default_factory=dict)
    analysis_enabled: bool = False
    scale: ScaleDecision | None = None
    metrics: MetricsStatus | None = None
    router: RouterReport | None = None
    activity: Activity = field(default_factory=Activity)
