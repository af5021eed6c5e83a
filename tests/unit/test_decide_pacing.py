"""When a ModelDeployment is looked at again, and which legacy finalizers go (tables)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelops_operator.decide.finalizers import LEGACY_FINALIZERS, legacy_cleanup
from modelops_operator.decide.pacing import (
    JITTER,
    next_delay,
    retry_delay,
    safety_delay,
    trigger_fingerprint,
)


@given(interval=st.floats(1, 3600), draw=st.floats(0, 1, exclude_max=True))
def test_safety_net_stays_within_its_jitter(interval: float, draw: float) -> None:
    assert interval * (1 - JITTER) <= safety_delay(interval, draw) <= interval * (1 + JITTER)
    first = safety_delay(interval, draw, first=True)
    assert interval * JITTER <= first <= interval


def test_safety_net_spreads_a_thousand_objects() -> None:
    delays = sorted(safety_delay(300.0, i / 1000) for i in range(1000))
    # Uniform draws: no second of the window holds more than a handful of passes.
    per_second: dict[int, int] = {}
    for d in delays:
        per_second[int(d)] = per_second.get(int(d), 0) + 1
    assert max(per_second.values()) <= 9
    assert delays[-1] - delays[0] >= 2 * JITTER * 300 * 0.99


@pytest.mark.parametrize(
    ("failures", "delay"), [(1, 5.0), (2, 10.0), (3, 20.0), (5, 80.0), (6, 120.0), (40, 120.0)]
)
def test_retry_backoff(failures: int, delay: float) -> None:
    assert retry_delay(failures) == delay


@pytest.mark.parametrize(
    ("requeue", "safety", "delay"),
    [
        (None, 33.0, 33.0),
        (5.0, 33.0, 5.0),
        (60.0, 33.0, 33.0),
        (30.0, 27.0, 27.0),  # "look again in one interval": the jittered net instead
        (30.0, 35.0, 35.0),
        (23.0, 35.0, 23.0),  # sooner than the net can be: kept
    ],
)
def test_next_delay_is_the_sooner(requeue: float | None, safety: float, delay: float) -> None:
    assert next_delay(requeue, safety, 30.0) == delay


def test_status_only_changes_do_not_trigger() -> None:
    body = {
        "metadata": {"uid": "u", "generation": 1, "resourceVersion": "5"},
        "spec": {"a": 1},
        "status": {"phase": "Building"},
    }
    echo = {**body, "metadata": {**body["metadata"], "resourceVersion": "6"}, "status": {}}
    assert trigger_fingerprint(echo) == trigger_fingerprint(body)
    annotated = {
        **body,
        "metadata": {**body["metadata"], "annotations": {"modelops.dev/retry": "1"}},
    }
    assert trigger_fingerprint(annotated) != trigger_fingerprint(body)
    respec = {**body, "metadata": {**body["metadata"], "generation": 2}}
    assert trigger_fingerprint(respec) != trigger_fingerprint(body)


@pytest.mark.parametrize(
    ("meta", "patch"),
    [
        ({"resourceVersion": "3"}, None),
        ({"finalizers": ["x/y"]}, None),
        (
            {"finalizers": [*LEGACY_FINALIZERS, "x/y"], "resourceVersion": "3"},
            {"metadata": {"finalizers": ["x/y"], "resourceVersion": "3"}},
        ),
        (
            {"finalizers": [LEGACY_FINALIZERS[0]], "resourceVersion": "4"},
            {"metadata": {"finalizers": [], "resourceVersion": "4"}},
        ),
        (
            {"annotations": {"modelops.dev/last-handled-configuration": "{}", "k": "v"}},
            {"metadata": {"annotations": {"modelops.dev/last-handled-configuration": None}}},
        ),
    ],
)
def test_legacy_cleanup(meta: dict[str, object], patch: dict[str, object] | None) -> None:
    assert legacy_cleanup({"metadata": meta}) == patch
