"""The operator's own metrics of what a reconcile did: builds started, rollouts, rollbacks."""

from __future__ import annotations

from ..decide.plan import Apply, Emit, EventReason, Plan
from ..k8s.apply import Applied
from ..k8s.resources import DEPLOYMENTS, JOBS
from ..observability import OperatorMetrics
from ..render.common import LABEL_COMPONENT

# Which Events count in the operator's own metrics: a lookup, never a substring match.
ROLLBACK_REASONS = frozenset({EventReason.ROLLED_BACK, EventReason.ROLLOUT_FAILED})
BUILD_OUTCOMES = {EventReason.BUILD_SUCCEEDED: "succeeded", EventReason.BUILD_FAILED: "failed"}


def count_plan(
    metrics: OperatorMetrics, key: tuple[str, str], plan: Plan, applied: Applied
) -> None:
    """Count the plan's created build Jobs and Deployments and its Events in `metrics`."""
    for action in plan.actions:
        if isinstance(action, Apply) and action.manifest.get("kind") == JOBS.kind:
            ref = f"{JOBS.kind}/{action.manifest['metadata']['name']}"
            labels = action.manifest["metadata"].get("labels") or {}
            if ref in applied.created and labels.get(LABEL_COMPONENT) == "build":
                metrics.builds.labels("started").inc()
        elif isinstance(action, Apply) and action.manifest.get("kind") == DEPLOYMENTS.kind:
            if f"{DEPLOYMENTS.kind}/{action.manifest['metadata']['name']}" in applied.created:
                metrics.rollouts.inc()
        elif isinstance(action, Emit):
            count_event(metrics, action.reason)
            metrics.count_event(*key, action.reason.value)


def count_event(metrics: OperatorMetrics, reason: EventReason) -> None:
    """A rollback or a build's end, by the Event's reason."""
    if reason in ROLLBACK_REASONS:
        metrics.rollbacks.inc()
    elif reason in BUILD_OUTCOMES:
        metrics.builds.labels(BUILD_OUTCOMES[reason]).inc()
