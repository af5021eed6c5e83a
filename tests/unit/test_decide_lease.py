"""The Lease maths (decide/lease.py) as tables: acquire, renew, expire, clock skew, fencing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelops_operator.decide.lease import (
    Action,
    LeaseRecord,
    LeaseTiming,
    Seen,
    expired,
    leading,
    next_step,
    observe,
    released,
)

T = LeaseTiming(duration=8.0, renew_deadline=5.0, retry_period=2.0)
WALL = "2026-12-01T00:00:00.000000Z"


def held(
    holder: str, renew: str = "2026-12-01T00:00:00.000000Z", version: str = "7"
) -> LeaseRecord:
    """A Lease held by `holder`."""
    return LeaseRecord(holder, 8, 3, "2026-11-30T00:00:00.000000Z", renew, version)


@pytest.mark.parametrize(
    ("seen", "now", "action", "holder", "transitions"),
    [
        (None, 0.0, Action.CREATE, "me", 0),  # no Lease at all
        (Seen(held("me"), 100.0), 101.0, Action.RENEW, "me", 3),  # ours: renew, same count
        (Seen(held("other"), 100.0), 107.9, Action.WAIT, None, None),  # not yet expired
        (Seen(held("other"), 100.0), 108.0, Action.ACQUIRE, "me", 4),  # expired: take it over
        (Seen(held(""), 100.0), 100.0, Action.ACQUIRE, "me", 4),  # released: at once
        (Seen(released(held("other")), 100.0), 100.5, Action.ACQUIRE, "me", 4),
    ],
)
def test_next_step(
    seen: Seen | None, now: float, action: Action, holder: str | None, transitions: int | None
) -> None:
    step = next_step(seen, "me", now, WALL, T)
    assert step.action == action
    if holder is None:
        assert step.record is None
    else:
        assert step.record is not None
        assert (step.record.holder, step.record.transitions) == (holder, transitions)
        assert step.record.renew_time == WALL
        assert step.record.duration_seconds == 8


@pytest.mark.parametrize(
    ("previous", "record", "now", "first_seen"),
    [
        (None, held("a"), 5.0, 5.0),
        (Seen(held("a"), 1.0), held("a"), 5.0, 1.0),  # unchanged: keeps when first seen
        (Seen(held("a"), 1.0), held("a", renew="2026-12-01T00:00:02.000000Z"), 5.0, 5.0),
        (Seen(held("a"), 1.0), held("a", version="8"), 5.0, 5.0),  # written again
        (Seen(held("a"), 1.0), held("b"), 5.0, 5.0),  # another holder
    ],
)
def test_observe_keeps_the_first_sight_of_a_record(
    previous: Seen | None, record: LeaseRecord, now: float, first_seen: float
) -> None:
    assert observe(previous, record, now).at == first_seen


@pytest.mark.parametrize(
    "renew",
    [
        "2000-01-01T00:00:00.000000Z",  # the holder's clock far behind ours
        "2099-01-01T00:00:00.000000Z",  # far ahead
        None,
    ],
)
def test_clock_skew_never_decides_expiry(renew: str | None) -> None:
    """Only this process's monotonic clock since it first saw the record counts."""
    seen = observe(None, held("other", renew=renew or ""), 50.0)
    assert not expired(seen, 57.9)
    assert expired(seen, 58.0)
    # A holder that keeps renewing (a new renewTime each look) never expires, skewed or not.
    later = observe(seen, held("other", renew="1970-01-01T00:00:09.000000Z", version="9"), 57.0)
    assert not expired(later, 64.9)


@pytest.mark.parametrize(
    ("renewed_at", "now", "ok"),
    [(None, 0.0, False), (10.0, 10.0, True), (10.0, 14.9, True), (10.0, 15.0, False)],
)
def test_fencing_leads_only_until_the_renew_deadline(
    renewed_at: float | None, now: float, ok: bool
) -> None:
    assert leading(renewed_at, now, T) is ok


@given(sent=st.floats(0, 1e6), seen_delay=st.floats(0, 30), after=st.floats(0, 60))
def test_holder_stops_before_any_candidate_may_take_over(
    sent: float, seen_delay: float, after: float
) -> None:
    """A candidate sees the renewal after it was sent; by the time it may take over, the holder
    has stopped writing for (duration - renew deadline) seconds already."""
    candidate = Seen(held("holder"), sent + seen_delay)
    t = sent + after
    if expired(candidate, t):
        gap = T.duration - T.renew_deadline
        assert not leading(sent, t - gap * 0.999, T)


def test_timing_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="retry period"):
        LeaseTiming(duration=5, renew_deadline=5, retry_period=1)


def test_record_round_trips_through_the_wire_form() -> None:
    record = held("me")
    body = {"metadata": {"resourceVersion": "7"}, "spec": record.spec()}
    assert LeaseRecord.from_body(body) == record
    assert released(record).spec()["holderIdentity"] == ""
