"""What one reconcile decides from: the children the k8s layer observed, and the context."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..api import MetricsStatus
from ..settings import Settings
from .analysis import Analysis
from .scale_recommend import ScaleDecision


@dataclass(frozen=True)
class Observed:
    """Children owned by the ModelDeployment as the API server returned them.

    jobs: build Jobs by name; a terminated builder's termination message is attached by the
    k8s layer as job["status"]["terminationMessage"]. deployments: revision Deployments by name
    (with status). pods: the pods of each revision Deployment, by Deployment name. configmaps:
    names of the revision ConfigMaps. service: the Service, or None. store_entry: engine.json of
    the desired engine key when the store holds a complete entry for it, else None.
    """

    jobs: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    deployments: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    pods: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)
    configmaps: frozenset[str] = frozenset()
    service: dict[str, Any] | None = None
    store_entry: dict[str, Any] | None = None


@dataclass(frozen=True)
class DecideContext:
    """The clock, the operator settings and what the metrics daemon gathered since last time.

    analyses maps a revision number to ONE new canary analysis of it; each is counted once, so
    the caller passes it only to the reconcile that follows the analysis. analysis_enabled says
    that such analyses are being fed: readiness held for one analysisIntervalSeconds then no
    longer advances a canary step on its own. scale is the autoscaler's newest decision (applied
    once, only if it was made against the replica count reconcile still sees); metrics is the
    newest status.metrics (None: keep the old one).
    """

    now: datetime
    settings: Settings
    analyses: Mapping[int, Analysis] = field(default_factory=dict)
    analysis_enabled: bool = False
    scale: ScaleDecision | None = None
    metrics: MetricsStatus | None = None
