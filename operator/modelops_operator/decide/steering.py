"""Steering a rollout by annotation: what the operator reads from them (`read_steering`).

Each annotation names the candidate revision it applies to (`modelops.dev/abort: "3"`), so a
value left behind never steers a later rollout, and none of them is a spec edit (GitOps tools
leave annotations they do not own alone):

- `modelops.dev/promote: N`: revision N skips its remaining canary steps (one 100% step; its
  validation run and readiness still gate it);
- `modelops.dev/abort: N`: revision N is rolled back now (reason Aborted); like any rollback it
  blocks the generation until `modelops.dev/retry` changes or the spec does;
- `modelops.dev/pause: N`: revision N holds at its step (analyses still count and can roll it
  back);
- `modelops.dev/weight: N:PERCENT`: revision N holds at PERCENT of the replicas and requests (a
  manual step) instead of its step's own.

`modelops.dev/retry` and `modelops.dev/rollback-to` are read where they act (decide/facts.py).
Which request makes sense in which phase, and the one write for it: decide/steering_rules.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..api import RolloutProgress
from ..render.common import (
    ANNOTATION_ABORT,
    ANNOTATION_PAUSE,
    ANNOTATION_PROMOTE,
    ANNOTATION_WEIGHT,
)
from .plan import Emit, EventReason


def revision_value(raw: str | None) -> int | None:
    """A revision number annotation's value; None when absent or not a number."""
    text = (raw or "").strip()
    return int(text) if text.isdigit() and len(text) <= 9 else None


def weight_value(raw: str | None) -> tuple[int, int] | None:
    """(revision, percent) of `N:PERCENT`; None when absent or malformed or above 100%."""
    revision, sep, percent = (raw or "").strip().partition(":")
    number, share = revision_value(revision), revision_value(percent)
    if not sep or number is None or share is None or share > 100:
        return None
    return number, share


@dataclass(frozen=True)
class Steering:
    """The steering annotations of one ModelDeployment, parsed."""

    promote: int | None = None
    abort: int | None = None
    pause: int | None = None
    weight: tuple[int, int] | None = None

    def promotes(self, revision: int) -> bool:
        """Whether revision `revision` skips its remaining steps."""
        return self.promote == revision

    def aborts(self, revision: int) -> bool:
        """Whether revision `revision` is to be rolled back now."""
        return self.abort == revision

    def weight_of(self, revision: int) -> int | None:
        """The manual weight set for `revision`, if any."""
        if self.weight is None or self.weight[0] != revision:
            return None
        return self.weight[1]

    def note(self, revision: int) -> str:
        """What steers `revision` now, in words ("" when nothing does)."""
        if self.promotes(revision):
            return f"promote requested ({ANNOTATION_PROMOTE}): the remaining steps are skipped"
        return self.hold_reason(revision)

    def hold_reason(self, revision: int) -> str:
        """Why `revision` may not leave its step ("" when it may)."""
        if self.weight_of(revision) is not None:
            return f"held at a manual weight ({ANNOTATION_WEIGHT})"
        if self.pause == revision:
            return f"paused ({ANNOTATION_PAUSE})"
        return ""


def read_steering(annotations: Mapping[str, str]) -> Steering:
    """The steering annotations; a malformed value is ignored (as if absent)."""
    return Steering(
        promote=revision_value(annotations.get(ANNOTATION_PROMOTE)),
        abort=revision_value(annotations.get(ANNOTATION_ABORT)),
        pause=revision_value(annotations.get(ANNOTATION_PAUSE)),
        weight=weight_value(annotations.get(ANNOTATION_WEIGHT)),
    )


def steered_steps(steps: Sequence[int], step: int, weight: int | None) -> list[int]:
    """The canary percents with the current step's replaced by a manual weight."""
    out = list(steps)
    if weight is not None and out:
        out[min(step, len(out) - 1)] = weight
    return out


def record_steering(
    progress: RolloutProgress, before: str | None, note: str, revision: int, message: str
) -> tuple[RolloutProgress, str, tuple[Emit, ...]]:
    """The progress remembering what steers the candidate, the status message saying it, and
    a RolloutSteered Event when that changed since the last look (`before`)."""
    said = message if not note or note in message else f"{message}; {note}"
    events: tuple[Emit, ...] = ()
    if note and note != before:
        events = (Emit(EventReason.ROLLOUT_STEERED, f"revision {revision}: {note}"),)
    elif before and not note:
        events = (Emit(EventReason.ROLLOUT_STEERED, f"revision {revision}: resumed"),)
    return progress.model_copy(update={"steered": note or None}), said, events
