"""How a canary step splits the replicas, and which rollouts have no canary steps at all.

Kept apart from decide/rollout.py (which imports the validation and rendering code) so that
`kubectl modelops` can apply the same rules without importing all of that.
"""

from __future__ import annotations

import math

from ..api import RolloutSpec, RolloutStrategy


def split_canary(desired: int, percent: int) -> tuple[int, int]:
    """(new, old) replicas at a canary step: new = ceil(desired * percent / 100), at least 1."""
    if desired <= 0:
        return 0, 0
    new = min(desired, max(1, math.ceil(desired * percent / 100)))
    return new, desired - new


def is_immediate(spec: RolloutSpec, has_current: bool, pinned: bool) -> bool:
    """Recreate, a first revision and a manual rollback replace at once (one 100% step)."""
    return spec.strategy == RolloutStrategy.RECREATE or not has_current or pinned
