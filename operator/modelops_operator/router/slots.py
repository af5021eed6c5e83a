"""PURE: which server slot carries which revision, and the admin commands that get there.

A slot keeps its revision as long as the revision's address is unchanged, so a weight change
never moves traffic between slots. Capacity moves first: raised weights and newly enabled slots
come before lowered weights, and slots no longer wanted are put in maintenance last (their open
connections finish; new requests go elsewhere).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .admin import SlotState


@dataclass(frozen=True)
class Target:
    """A revision the router must serve: where its Service answers on this backend's port."""

    revision: int
    address: str
    port: int
    weight: int


def assign(targets: Sequence[Target], slots: Sequence[SlotState]) -> dict[str, Target]:
    """slot name -> target: existing assignments kept, the rest in free slots (maintenance
    slots first, lowest name first)."""
    assigned: dict[str, Target] = {}
    by_place = {(s.address, s.port): s for s in slots if not s.maintenance}
    waiting = []
    for target in targets:
        slot = by_place.get((target.address, target.port))
        if slot is not None and slot.name not in assigned:
            assigned[slot.name] = target
        else:
            waiting.append(target)
    free = sorted(
        (s for s in slots if s.name not in assigned),
        key=lambda s: (not s.maintenance, _slot_order(s.name)),
    )
    if len(waiting) > len(free):
        raise ValueError(f"{len(targets)} revisions but only {len(slots)} router slots")
    for target, slot in zip(waiting, free, strict=False):
        assigned[slot.name] = target
    return assigned


def _slot_order(name: str) -> int:
    digits = "".join(ch for ch in name if ch.isdigit())
    return int(digits) if digits else 0


def commands(backend: str, slots: Sequence[SlotState], assigned: Mapping[str, Target]) -> list[str]:
    """Admin commands that make `slots` carry `assigned`, capacity first."""
    raises: list[str] = []
    lowers: list[str] = []
    parks: list[str] = []
    for slot in sorted(slots, key=lambda s: _slot_order(s.name)):
        server = f"{backend}/{slot.name}"
        target = assigned.get(slot.name)
        if target is None:
            if not slot.maintenance:
                parks += [f"set server {server} weight 0", f"set server {server} state maint"]
            continue
        moved = (slot.address, slot.port) != (target.address, target.port)
        if moved:
            raises.append(f"set server {server} addr {target.address} port {target.port}")
        if slot.maintenance or moved or target.weight > slot.weight:
            raises.append(f"set server {server} weight {target.weight}")
            if slot.maintenance:
                raises.append(f"set server {server} state ready")
        elif target.weight < slot.weight:
            lowers.append(f"set server {server} weight {target.weight}")
    return raises + lowers + parks


def applied(slots: Sequence[SlotState], assigned: Mapping[str, Target]) -> bool:
    """True when every target's slot has its address and weight and is out of maintenance."""
    by_name = {slot.name: slot for slot in slots}
    for name, target in assigned.items():
        slot = by_name.get(name)
        if slot is None or slot.maintenance or slot.weight != target.weight:
            return False
        if (slot.address, slot.port) != (target.address, target.port):
            return False
    return True
