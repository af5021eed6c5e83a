"""metav1.Condition helpers: lastTransitionTime moves only when the status flips."""

from __future__ import annotations

from .status import Condition, ConditionStatus


def find_condition(conditions: list[Condition], ctype: str) -> Condition | None:
    """Return the condition of that type, or None."""
    return next((c for c in conditions if c.type == ctype), None)


def set_condition(
    conditions: list[Condition],
    ctype: str,
    status: ConditionStatus | str,
    reason: str,
    message: str,
    now: str,
    observed_generation: int | None = None,
) -> list[Condition]:
    """Return a new list with the condition set; the transition time changes only on a flip."""
    status = ConditionStatus(status)
    old = find_condition(conditions, ctype)
    transition = now if old is None or old.status != status else old.last_transition_time
    new = Condition(
        type=ctype,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=transition,
        observed_generation=observed_generation,
    )
    out = [c for c in conditions if c.type != ctype]
    out.append(new)
    return sorted(out, key=lambda c: c.type)


def is_true(conditions: list[Condition], ctype: str) -> bool:
    """True when the condition exists and is True."""
    cond = find_condition(conditions, ctype)
    return cond is not None and cond.status == ConditionStatus.TRUE
