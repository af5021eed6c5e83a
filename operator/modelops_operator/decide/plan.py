"""What one reconcile decides: ordered actions on children, the new status, when to look again."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Apply:
    """Create the object; on 409 merge-patch its spec and labels to this manifest."""

    manifest: dict[str, Any]


@dataclass(frozen=True)
class Delete:
    """Delete a child in the ModelDeployment's namespace; 404 counts as done."""

    api_version: str
    kind: str
    name: str


@dataclass(frozen=True)
class Emit:
    """A Kubernetes Event on the ModelDeployment."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


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
