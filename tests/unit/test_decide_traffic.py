"""decide/traffic.py: the weights of each step, the route table, and whether the router runs it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelops_operator.api import TrafficMode, TrafficStatus, TrafficWeight
from modelops_operator.decide.traffic import (
    ROUTER_CATCHUP_SECONDS,
    ROUTER_SECONDS,
    RouterReport,
    applied_note,
    next_status,
    route_table,
    router_read_delay,
    router_synced,
    split,
    with_draining,
)

ROUTER, GATEWAY, REPLICAS = TrafficMode.ROUTER, TrafficMode.GATEWAY_API, TrafficMode.REPLICAS


def status(version: int, weights: dict[int, int], mode: TrafficMode = ROUTER) -> TrafficStatus:
    """A status.traffic with these weights."""
    listed = [TrafficWeight(revision=n, weight=w) for n, w in sorted(weights.items())]
    return TrafficStatus(mode=mode, version=version, weights=listed)


def report(*versions: int, pods: int = 2, ready: int = 2) -> RouterReport:
    """What `pods` router pods (`ready` of them ready) say they run."""
    return RouterReport(pods=pods, ready_pods=ready, applied_versions=versions)


# --- split -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("current", "candidate", "canary", "expected"),
    [
        pytest.param(None, None, 0, {}, id="nothing-yet"),
        pytest.param(None, 1, 0, {1: 0}, id="first-revision-before-validation"),
        pytest.param(None, 1, 100, {1: 100}, id="first-revision-validated"),
        pytest.param(1, None, 0, {1: 100}, id="current-alone-takes-all"),
        pytest.param(1, None, 40, {1: 100}, id="canary-weight-ignored-without-candidate"),
        pytest.param(1, 2, 0, {1: 100, 2: 0}, id="candidate-not-validated"),
        pytest.param(1, 2, 25, {1: 75, 2: 25}, id="canary-step"),
        pytest.param(1, 2, 100, {1: 0, 2: 100}, id="last-step-keeps-current-listed"),
    ],
)
def test_split_table(
    current: int | None, candidate: int | None, canary: int, expected: dict[int, int]
) -> None:
    assert split(current, candidate, canary) == expected


@given(st.integers(1, 50), st.integers(51, 100), st.integers(0, 100))
def test_split_of_two_revisions_sums_to_100(current: int, candidate: int, canary: int) -> None:
    weights = split(current, candidate, canary)
    assert sum(weights.values()) == 100
    assert weights[candidate] == canary
    assert set(weights) == {current, candidate}


# --- with_draining ---------------------------------------------------------------------------
def test_draining_revisions_get_zero_and_stay_listed() -> None:
    weights = with_draining({2: 75, 3: 25}, running=[1, 2, 3, 4])
    assert weights == {1: 0, 2: 75, 3: 25, 4: 0}


def test_draining_never_overrides_a_serving_weight() -> None:
    """A running revision that has a weight keeps it; only the others get 0."""
    assert with_draining({1: 100}, running=[1]) == {1: 100}


@given(
    current=st.one_of(st.none(), st.integers(1, 20)),
    candidate=st.one_of(st.none(), st.integers(21, 40)),
    canary=st.integers(0, 100),
    running=st.lists(st.integers(1, 40), max_size=8),
)
def test_weights_of_a_step_sum_to_100_and_drain_the_rest(
    current: int | None, candidate: int | None, canary: int, running: list[int]
) -> None:
    """Weights sum to 100 whenever someone gets requests; every other running revision gets 0.

    Without a current revision a rollout is immediate: the candidate's weight is 0 or 100."""
    if current is None:
        canary = 100 if canary >= 50 else 0
    weights = with_draining(split(current, candidate, canary), running)
    if any(weights.values()):
        assert sum(weights.values()) == 100
    tracked = {n for n in (current, candidate) if n is not None}
    for number in running:
        assert number in weights  # still listed while its pods drain
        if number not in tracked:
            assert weights[number] == 0
    assert set(weights) == tracked | set(running)


# --- next_status -----------------------------------------------------------------------------
def test_first_status_starts_at_version_one() -> None:
    new = next_status(ROUTER, None, {1: 0}, None)
    assert (new.mode, new.version) == ("Router", 1)
    assert new.weights == [TrafficWeight(revision=1, weight=0)]


@pytest.mark.parametrize(
    ("old", "mode", "weights", "version"),
    [
        pytest.param(status(4, {1: 100}), ROUTER, {1: 100}, 4, id="same-weights-same-version"),
        pytest.param(status(4, {1: 100}), ROUTER, {1: 75, 2: 25}, 5, id="weights-moved"),
        pytest.param(status(4, {1: 100}), ROUTER, {1: 100, 2: 0}, 5, id="draining-added"),
        pytest.param(status(4, {1: 100, 2: 0}), ROUTER, {1: 100}, 5, id="draining-gone"),
        pytest.param(status(4, {1: 100}), GATEWAY, {1: 100}, 5, id="mode-changed"),
        pytest.param(status(0, {}, REPLICAS), ROUTER, {1: 100}, 1, id="from-replicas"),
    ],
)
def test_version_moves_only_when_the_table_changes(
    old: TrafficStatus, mode: TrafficMode, weights: dict[int, int], version: int
) -> None:
    assert next_status(mode, old, weights, None).version == version


def test_status_weights_are_sorted_by_revision() -> None:
    new = next_status(ROUTER, None, {3: 0, 1: 40, 2: 60}, "note")
    assert [w.revision for w in new.weights] == [1, 2, 3]
    assert new.applied == "note"


@given(
    st.dictionaries(st.integers(0, 9), st.integers(0, 100), max_size=5),
    st.dictionaries(st.integers(0, 9), st.integers(0, 100), max_size=5),
    st.integers(0, 1000),
)
def test_version_grows_by_one_exactly_when_weights_differ(
    before: dict[int, int], after: dict[int, int], version: int
) -> None:
    new = next_status(ROUTER, status(version, before), after, None)
    assert new.version == (version if before == after else version + 1)


# --- route_table -----------------------------------------------------------------------------
def test_route_table_names_each_revision_service() -> None:
    table = route_table("resnet", "ml", status(7, {1: 75, 2: 25, 3: 0}))
    assert table.version == 7
    assert table.namespace == "ml"
    assert [(r.revision, r.service, r.weight) for r in table.routes] == [
        (1, "resnet-r1", 75),
        (2, "resnet-r2", 25),
        (3, "resnet-r3", 0),
    ]
    assert [r.revision for r in table.serving()] == [1, 2]


def test_route_table_of_a_long_name_fits_service_names() -> None:
    table = route_table("m" * 200, "ml", status(1, {12: 100}))
    assert len(table.routes[0].service) <= 63
    assert table.routes[0].service.endswith("-r12")


# --- RouterReport.runs and router_synced -----------------------------------------------------
@pytest.mark.parametrize(
    ("seen", "version", "runs"),
    [
        pytest.param(report(5, 5), 5, True, id="all-ready-pods-run-it"),
        pytest.param(report(6, 5), 5, True, id="newer-counts"),
        pytest.param(report(5, 4), 5, False, id="one-pod-behind"),
        pytest.param(report(5), 5, False, id="one-ready-pod-silent"),
        pytest.param(report(), 0, False, id="nobody-reports"),
        pytest.param(report(5, pods=3, ready=1), 5, True, id="unready-pods-not-awaited"),
    ],
)
def test_router_runs(seen: RouterReport, version: int, runs: bool) -> None:
    assert seen.runs(version) is runs


@pytest.mark.parametrize(
    ("mode", "seen", "synced"),
    [
        pytest.param(REPLICAS, None, True, id="replicas-has-no-table"),
        pytest.param(ROUTER, None, False, id="router-silent"),
        pytest.param(ROUTER, report(3, 3), True, id="router-runs-it"),
        pytest.param(ROUTER, report(2, 3), False, id="router-behind"),
        pytest.param(GATEWAY, None, True, id="gateway-route-written"),
        pytest.param(GATEWAY, report(2, 2), False, id="gateway-reports-behind"),
    ],
)
def test_router_synced(mode: TrafficMode, seen: RouterReport | None, synced: bool) -> None:
    assert router_synced(mode, status(3, {1: 100}, mode), seen) is synced


# --- applied_note ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mode", "seen", "note"),
    [
        pytest.param(ROUTER, None, "router not reporting yet", id="silent"),
        pytest.param(ROUTER, report(3, 2), "1/2 router pods run version 3", id="half"),
        pytest.param(ROUTER, report(4, 3, pods=3), "2/3 router pods run version 3", id="newer"),
        pytest.param(GATEWAY, report(3), "GatewayAPI mode", id="gateway"),
        pytest.param(REPLICAS, None, "Replicas mode", id="replicas"),
    ],
)
def test_applied_note(mode: TrafficMode, seen: RouterReport | None, note: str) -> None:
    assert applied_note(mode, status(3, {1: 100}), seen) == note


@pytest.mark.parametrize(
    ("seen", "published", "lagging_for", "delay"),
    [
        pytest.param(report(4, 5), 5, 0.0, ROUTER_CATCHUP_SECONDS, id="one-pod-behind: soon"),
        pytest.param(report(4), 5, 9.9, ROUTER_CATCHUP_SECONDS, id="behind-within-window"),
        pytest.param(report(4), 5, 10.0, ROUTER_SECONDS, id="stuck-router: as usual"),
        pytest.param(report(5, 5), 5, 0.0, ROUTER_SECONDS, id="runs-it: as usual"),
        pytest.param(report(4), None, 0.0, ROUTER_SECONDS, id="nothing-published"),
        pytest.param(None, 5, 0.0, ROUTER_SECONDS, id="not-read-yet"),
        pytest.param(report(pods=0, ready=0), 5, 0.0, ROUTER_SECONDS, id="no-router-pods"),
    ],
)
def test_router_read_delay(
    seen: RouterReport | None, published: int | None, lagging_for: float, delay: float
) -> None:
    assert router_read_delay(seen, published, lagging_for) == delay
