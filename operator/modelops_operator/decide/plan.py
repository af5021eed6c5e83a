"""What one reconcile decides: ordered actions on children, the new status, when to look again."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal


class EventReason(StrEnum):
    """Every reason of an Event the operator posts on a ModelDeployment (kubectl describe)."""

    INVALID_SPEC = "InvalidSpec"
    BUILD_STARTED = "BuildStarted"
    BUILD_SUCCEEDED = "BuildSucceeded"
    BUILD_FAILED = "BuildFailed"
    REVISION_CREATED = "RevisionCreated"
    STEP_PROMOTED = "StepPromoted"
    ROLLED_OUT = "RolledOut"
    ROLLED_BACK = "RolledBack"
    ROLLOUT_FAILED = "RolloutFailed"
    ROLLOUT_SUPERSEDED = "RolloutSuperseded"
    ROLLBACK_TARGET_INVALID = "RollbackTargetInvalid"
    SCALED = "Scaled"
    VALIDATION_PASSED = "ValidationPassed"
    INCOMPATIBLE_SIGNATURE = "IncompatibleSignature"
    TRAFFIC_SHIFTED = "TrafficShifted"
    CHILD_REJECTED = "ChildRejected"
    POD_STUCK = "PodStuck"
    ENGINE_REFUSED = "EngineRefused"
    SOURCE_VERIFIED = "SourceVerified"
    SOURCE_RESTAGED = "SourceRestaged"
    SCALED_TO_ZERO = "ScaledToZero"
    WOKE_UP = "WokeUp"
    COLD_START_TIMED_OUT = "ColdStartTimedOut"
    ROLLOUT_STEERED = "RolloutSteered"


# Everything else is Normal: the type follows from the reason, so the two never disagree.
WARNING_REASONS = frozenset(
    {
        EventReason.INVALID_SPEC,
        EventReason.BUILD_FAILED,
        EventReason.ROLLED_BACK,
        EventReason.ROLLOUT_FAILED,
        EventReason.ROLLBACK_TARGET_INVALID,
        EventReason.INCOMPATIBLE_SIGNATURE,
        EventReason.CHILD_REJECTED,
        EventReason.POD_STUCK,
        EventReason.ENGINE_REFUSED,
        EventReason.COLD_START_TIMED_OUT,
    }
)


@dataclass(frozen=True)
class Apply:
    """Create the object; on 409 merge-patch its spec and labels to this manifest."""

    manifest: dict[str, Any]


@dataclass(frozen=True)
class Delete:
    """Delete a child, in the ModelDeployment's namespace unless `namespace` names another (a
    build Job in the operator's); 404 counts as done."""

    api_version: str
    kind: str
    name: str
    namespace: str | None = None


@dataclass(frozen=True)
class Emit:
    """A Kubernetes Event on the ModelDeployment."""

    reason: EventReason
    message: str

    @property
    def type(self) -> Literal["Normal", "Warning"]:
        """Warning for failures and refusals, Normal otherwise."""
        return "Warning" if self.reason in WARNING_REASONS else "Normal"


Action = Apply | Delete | Emit


@dataclass(frozen=True)
class Plan:
    """Actions in the order they must run, and the full new status in wire (camelCase) form.

    Order matters: a revision that must keep serving is scaled up before another is scaled
    down, so the k8s layer applies actions one after another and stops at the first failure.
    `requeue_after` is the number of seconds until something time-based needs another look.
    """

    actions: tuple[Action, ...]
    status: dict[str, Any]
    requeue_after: float | None = None

    @property
    def events(self) -> tuple[Emit, ...]:
        """Only the Events of the plan."""
        return tuple(a for a in self.actions if isinstance(a, Emit))

    @property
    def changes(self) -> tuple[Apply | Delete, ...]:
        """Only the writes to child objects."""
        return tuple(a for a in self.actions if not isinstance(a, Emit))
