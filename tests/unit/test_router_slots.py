"""router/slots.py: which HAProxy slot carries which revision, and the admin commands that get
there with capacity moved first."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelops_operator.router.admin import SlotState
from modelops_operator.router.slots import Target, applied, assign, commands
from tests.support.decide_world import FAST

PARKED = ("127.0.0.1", 1)


def slot(index: int, address: str = "127.0.0.1", port: int = 1, weight: int = 0) -> SlotState:
    """Slot rev<index> of the http backend; parked (in maintenance) unless it has an address."""
    return SlotState("http", f"rev{index}", address, port, weight, (address, port) == PARKED)


def target(revision: int, weight: int) -> Target:
    """Revision N's Service answers at 10.96.0.N:8000."""
    return Target(revision, f"10.96.0.{revision}", 8000, weight)


def run(slots: list[SlotState], issued: list[str]) -> list[SlotState]:
    """What HAProxy's slots look like after these `set server` commands."""
    by_name = {s.name: s for s in slots}
    for line in issued:
        words = line.split()
        assert words[:2] == ["set", "server"], line
        name = words[2].split("/", 1)[1]
        current = by_name[name]
        if words[3] == "addr":
            current = replace(current, address=words[4], port=int(words[6]))
        elif words[3] == "weight":
            current = replace(current, weight=int(words[4]))
        elif words[3:] == ["state", "maint"]:
            current = replace(current, maintenance=True)
        elif words[3:] == ["state", "ready"]:
            current = replace(current, maintenance=False)
        else:
            raise AssertionError(line)
        by_name[name] = current
    return [by_name[s.name] for s in slots]


# --- assign ----------------------------------------------------------------------------------
def test_a_revision_keeps_its_slot_when_its_weight_changes() -> None:
    slots = [slot(1), slot(2, "10.96.0.2", 8000, 50), slot(3, "10.96.0.1", 8000, 50)]
    assigned = assign([target(1, 90), target(2, 10)], slots)
    assert {name: t.revision for name, t in assigned.items()} == {"rev3": 1, "rev2": 2}


def test_new_revisions_take_parked_slots_lowest_first() -> None:
    slots = [slot(10), slot(2), slot(1, "10.96.0.9", 8000, 100)]
    assigned = assign([target(1, 100), target(2, 0)], slots)
    assert {name: t.revision for name, t in assigned.items()} == {"rev2": 1, "rev10": 2}


def test_an_active_slot_no_longer_wanted_is_reused_after_parked_ones() -> None:
    slots = [slot(1, "10.96.0.9", 8000, 100), slot(2)]
    assigned = assign([target(1, 50), target(2, 50)], slots)
    assert {name: t.revision for name, t in assigned.items()} == {"rev2": 1, "rev1": 2}


def test_more_revisions_than_slots_is_an_error() -> None:
    with pytest.raises(ValueError, match="3 revisions but only 2 router slots"):
        assign([target(1, 50), target(2, 50), target(3, 0)], [slot(1), slot(2)])


# --- commands --------------------------------------------------------------------------------
def test_commands_raise_capacity_before_lowering_and_park_last() -> None:
    slots = [slot(1, "10.96.0.1", 8000, 100), slot(2, "10.96.0.9", 8000, 0), slot(3)]
    assigned = {"rev1": target(1, 50), "rev3": target(2, 50)}
    assert commands("http", slots, assigned) == [
        "set server http/rev3 addr 10.96.0.2 port 8000",
        "set server http/rev3 weight 50",
        "set server http/rev3 state ready",
        "set server http/rev1 weight 50",
        "set server http/rev2 weight 0",
        "set server http/rev2 state maint",
    ]


def test_a_moved_slot_gets_its_address_then_its_weight() -> None:
    slots = [slot(1, "10.96.0.9", 8000, 30)]
    assert commands("grpc", slots, {"rev1": Target(4, "10.96.0.4", 8001, 30)}) == [
        "set server grpc/rev1 addr 10.96.0.4 port 8001",
        "set server grpc/rev1 weight 30",
    ]


def test_nothing_to_say_when_slots_match() -> None:
    slots = [slot(1, "10.96.0.1", 8000, 100), slot(2)]
    assigned = {"rev1": target(1, 100)}
    assert commands("http", slots, assigned) == []
    assert applied(slots, assigned) is True


@pytest.mark.parametrize(
    ("state", "done"),
    [
        (slot(1, "10.96.0.1", 8000, 100), True),
        (slot(1, "10.96.0.1", 8000, 90), False),
        (slot(1, "10.96.0.1", 8001, 100), False),
        (replace(slot(1, "10.96.0.1", 8000, 100), maintenance=True), False),
    ],
    ids=["matches", "weight", "port", "maintenance"],
)
def test_applied(state: SlotState, done: bool) -> None:
    assert applied([state], {"rev1": target(1, 100)}) is done


def test_applied_needs_the_slot_to_exist() -> None:
    assert applied([], {"rev1": target(1, 100)}) is False


# --- properties ------------------------------------------------------------------------------
@st.composite
def situations(draw: st.DrawFn) -> tuple[list[SlotState], list[Target]]:
    """Slots as HAProxy has them, and the targets of a new table."""
    count = draw(st.integers(2, 8))
    slots = []
    for index in range(1, count + 1):
        revision = draw(st.one_of(st.none(), st.integers(1, 6)))
        if revision is None:
            slots.append(slot(index))
        else:
            slots.append(slot(index, f"10.96.0.{revision}", 8000, draw(st.integers(0, 100))))
    revisions = draw(st.lists(st.integers(1, 6), unique=True, max_size=count))
    targets = [target(r, draw(st.integers(0, 100))) for r in revisions]
    return slots, targets


@FAST
@given(situations())
def test_commands_make_the_slots_carry_the_table(
    case: tuple[list[SlotState], list[Target]],
) -> None:
    slots, targets = case
    assigned = assign(targets, slots)
    assert sorted(t.revision for t in assigned.values()) == sorted(t.revision for t in targets)
    after = run(slots, commands("http", slots, assigned))
    assert applied(after, assigned)
    assert commands("http", after, assign(targets, after)) == []  # nothing left to do
    for state in after:
        if state.name not in assigned:
            assert state.maintenance
            assert state.weight == 0


@FAST
@given(situations())
def test_revisions_that_keep_their_address_keep_their_slot(
    case: tuple[list[SlotState], list[Target]],
) -> None:
    slots, targets = case
    assigned = assign(targets, slots)
    for state in slots:
        if state.maintenance:
            continue
        wanted = [t for t in targets if (t.address, t.port) == (state.address, state.port)]
        if (
            wanted
            and sum(1 for s in slots if (s.address, s.port) == (state.address, state.port)) == 1
        ):
            assert assigned[state.name] == wanted[0]


@FAST
@given(situations())
def test_no_weight_goes_down_before_every_weight_went_up(
    case: tuple[list[SlotState], list[Target]],
) -> None:
    slots, targets = case
    issued = commands("http", slots, assign(targets, slots))
    before = {s.name: s for s in slots}
    words = [line.split() for line in issued]
    moved = {w[2] for w in words if w[3] == "addr"}

    def lowers(w: list[str]) -> bool:
        old = before[w[2].split("/")[1]]
        if w[3:] == ["state", "maint"]:
            return True
        return (
            w[3] == "weight"
            and w[2] not in moved
            and not old.maintenance
            and int(w[4]) < old.weight
        )

    def raises(w: list[str]) -> bool:
        old = before[w[2].split("/")[1]]
        if w[3] == "addr" or w[3:] == ["state", "ready"]:
            return True
        return (
            w[3] == "weight"
            and w[2] not in moved
            and not old.maintenance
            and int(w[4]) > old.weight
        )

    lowering = [i for i, w in enumerate(words) if lowers(w)]
    raising = [i for i, w in enumerate(words) if raises(w)]
    if lowering and raising:
        assert max(raising) < min(lowering), issued
