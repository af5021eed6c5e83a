"""The enumerations only the operator's API has (the shared ones live in modelops_contract)."""

from __future__ import annotations

from enum import StrEnum


class ScalingMetric(StrEnum):
    """Which Triton figure the autoscaler holds at `target`."""

    QUEUE_TIME = "queueTime"
    INFERENCES_PER_SECOND = "inferencesPerSecond"
    GPU_UTILIZATION = "gpuUtilization"


class RolloutStrategy(StrEnum):
    """How a new revision replaces the serving one."""

    CANARY = "Canary"
    RECREATE = "Recreate"
