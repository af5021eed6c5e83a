"""decide/signature.py: can a candidate take the serving revision's clients, and the opt-in."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelops_contract.enums import DataType
from modelops_contract.manifest import EngineManifest
from modelops_operator.api import ConditionStatus, ModelDeployment, RolloutSpec
from modelops_operator.api.rollout import SIGNATURE_DIGEST_PATTERN
from modelops_operator.decide.build import BuildOutcome
from modelops_operator.decide.facts import Facts, read_facts
from modelops_operator.decide.inputs import DecideContext, Observed
from modelops_operator.decide.lineage import held_back, signature_block
from modelops_operator.decide.signature import differences, signature_digest
from tests.support.decide_world import (
    FAST,
    MAC_KEY,
    SETTINGS,
    T0,
    World,
    body,
    change,
    conds,
    entry,
    key_of,
    reasons,
)

KEY = "sha256:" + "0" * 64


def manifest(
    inputs: list[tuple[str, str, list[int]]] | None = None,
    outputs: list[tuple[str, str, list[int]]] | None = None,
    max_batch: int = 8,
    **extra: Any,
) -> EngineManifest:
    """A store entry's manifest with this I/O signature (name, data type, dims)."""
    raw = entry(KEY)
    if inputs is not None:
        raw["inputs"] = [{"name": n, "dataType": t, "dims": d} for n, t, d in inputs]
    if outputs is not None:
        raw["outputs"] = [{"name": n, "dataType": t, "dims": d} for n, t, d in outputs]
    raw["maxBatchSize"] = max_batch
    raw["optBatchSize"] = min(raw["optBatchSize"], max_batch)
    raw.update(extra)
    return EngineManifest.model_validate(raw)


SERVING = manifest([("input", "FP32", [3, 16]), ("mask", "INT64", [-1])], [("logits", "FP32", [4])])
IN_MASK = ("mask", "INT64", [-1])
OUT = [("logits", "FP32", [4])]

# (id, candidate, expected differences)
CASES: list[tuple[str, EngineManifest, list[str]]] = [
    ("identical", SERVING, []),
    (
        "input-renamed",
        manifest([("pixels", "FP32", [3, 16]), IN_MASK], OUT),
        ["input 'input' (FP32 [3, 16]) is gone", "new input 'pixels' (FP32 [3, 16]) is required"],
    ),
    (
        "input-extra",
        manifest([("input", "FP32", [3, 16]), IN_MASK, ("t", "FP32", [1])], OUT),
        ["new input 't' (FP32 [1]) is required"],
    ),
    (
        "input-dtype",
        manifest([("input", "FP16", [3, 16]), IN_MASK], OUT),
        ["input 'input': FP32 [3, 16] -> FP16 [3, 16]"],
    ),
    (
        "input-dim-fixed-changed",
        manifest([("input", "FP32", [3, 32]), IN_MASK], OUT),
        ["input 'input': FP32 [3, 16] -> FP32 [3, 32]"],
    ),
    ("input-dim-made-dynamic", manifest([("input", "FP32", [3, -1]), IN_MASK], OUT), []),
    (
        "input-dynamic-made-fixed",
        manifest([("input", "FP32", [3, 16]), ("mask", "INT64", [128])], OUT),
        ["input 'mask': INT64 [-1] -> INT64 [128]"],
    ),
    (
        "input-rank",
        manifest([("input", "FP32", [3, 16, 1]), IN_MASK], OUT),
        ["input 'input': FP32 [3, 16] -> FP32 [3, 16, 1]"],
    ),
    (
        "output-dim-made-dynamic",
        manifest([("input", "FP32", [3, 16]), IN_MASK], [("logits", "FP32", [-1])]),
        ["output 'logits': FP32 [4] -> FP32 [-1]"],
    ),
    (
        "output-dtype",
        manifest([("input", "FP32", [3, 16]), IN_MASK], [("logits", "FP16", [4])]),
        ["output 'logits': FP32 [4] -> FP16 [4]"],
    ),
    (
        "output-renamed",
        manifest([("input", "FP32", [3, 16]), IN_MASK], [("scores", "FP32", [4])]),
        ["output 'logits' (FP32 [4]) is gone"],
    ),
    (
        "output-extra-is-fine",
        manifest([("input", "FP32", [3, 16]), IN_MASK], [*OUT, ("probs", "FP32", [4])]),
        [],
    ),
    (
        "max-batch-lower",
        manifest([("input", "FP32", [3, 16]), IN_MASK], OUT, max_batch=4),
        ["maxBatchSize 8 -> 4 (larger batches would be refused)"],
    ),
    ("max-batch-higher", manifest([("input", "FP32", [3, 16]), IN_MASK], OUT, max_batch=64), []),
]


@pytest.mark.parametrize(
    ("candidate", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_differences_table(candidate: EngineManifest, expected: list[str]) -> None:
    assert differences(SERVING, candidate) == expected


def test_output_that_was_dynamic_may_become_fixed() -> None:
    serving = manifest(outputs=[("logits", "FP32", [-1, 4])])
    assert differences(serving, manifest(outputs=[("logits", "FP32", [7, 4])])) == []


# --- properties ------------------------------------------------------------------------------
NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,11}", fullmatch=True)
DTYPES = st.sampled_from(list(DataType))
DIMS = st.lists(st.one_of(st.just(-1), st.integers(1, 512)), max_size=4)


@st.composite
def signatures(draw: st.DrawFn) -> EngineManifest:
    names = draw(st.lists(NAMES, min_size=2, max_size=6, unique=True))
    cut = draw(st.integers(1, len(names) - 1))
    inputs = [(n, draw(DTYPES).value, draw(DIMS)) for n in names[:cut]]
    outputs = [(n, draw(DTYPES).value, draw(DIMS)) for n in names[cut:]]
    return manifest(inputs, outputs, max_batch=draw(st.integers(1, 4096)))


@FAST
@given(signatures())
def test_compatibility_is_reflexive(engine: EngineManifest) -> None:
    assert differences(engine, engine) == []
    assert differences(engine, engine.model_copy(deep=True)) == []


def _mutate(
    engine: EngineManifest, role: str, index: int, what: str, draw: Callable[..., Any]
) -> str:
    """Make one breaking change in place; return the text a difference must contain."""
    sigs = engine.inputs if role == "input" else engine.outputs
    sig = sigs[index % len(sigs)]
    if what == "name":
        taken = {s.name for s in (*engine.inputs, *engine.outputs)}
        old = sig.name
        sig.name = draw(NAMES.filter(lambda n: n not in taken))
        return f"'{old}'"
    if what == "dtype":
        sig.data_type = draw(DTYPES.filter(lambda t: t != sig.data_type))
        return f"'{sig.name}'"
    # dims: a different rank, or a fixed axis the serving side did not have there
    if not sig.dims or draw(st.booleans()):
        sig.dims = [*sig.dims, draw(st.integers(1, 512))]
    else:
        axis = draw(st.integers(0, len(sig.dims) - 1))
        old_dim = sig.dims[axis]
        if role == "output" and old_dim == -1:
            sig.dims = [*sig.dims, 1]  # a dynamic output axis accepts any fixed one: add a rank
        else:
            sig.dims[axis] = draw(st.integers(1, 512).filter(lambda d: d != old_dim))
    return f"'{sig.name}'"


@FAST
@given(signatures(), st.data())
def test_any_single_breaking_change_is_reported_by_name(
    serving: EngineManifest, data: st.DataObject
) -> None:
    """A changed name, data type, shape or a smaller max batch is named in the differences."""
    candidate = serving.model_copy(deep=True)
    what = data.draw(st.sampled_from(["name", "dtype", "dims", "batch"]))
    if what == "batch":
        if serving.max_batch_size == 1:
            return
        candidate.max_batch_size = data.draw(st.integers(1, serving.max_batch_size - 1))
        needle = f"maxBatchSize {serving.max_batch_size} -> {candidate.max_batch_size}"
    else:
        role = data.draw(st.sampled_from(["input", "output"]))
        needle = _mutate(candidate, role, data.draw(st.integers(0, 10)), what, data.draw)
    found = differences(serving, candidate)
    assert found, what
    assert any(needle in line for line in found), (needle, found)


@FAST
@given(signatures(), st.data())
def test_relaxing_changes_stay_compatible(serving: EngineManifest, data: st.DataObject) -> None:
    """Dynamic input axes, fixed output axes where the serving one was dynamic, more outputs
    and a larger max batch fail no client."""
    candidate = serving.model_copy(deep=True)
    for sig in candidate.inputs:
        sig.dims = [-1 if data.draw(st.booleans()) else d for d in sig.dims]
    for sig in candidate.outputs:
        sig.dims = [data.draw(st.integers(1, 512)) if d == -1 else d for d in sig.dims]
    candidate.outputs.append(candidate.outputs[0].model_copy(update={"name": "extra_output"}))
    candidate.max_batch_size = data.draw(st.integers(serving.max_batch_size, 4096))
    assert differences(serving, candidate) == []


# --- the digest ------------------------------------------------------------------------------
def test_digest_is_twelve_hex_that_accept_signature_takes() -> None:
    digest = signature_digest(SERVING)
    assert re.fullmatch(SIGNATURE_DIGEST_PATTERN, digest)
    assert RolloutSpec.model_validate({"acceptSignature": digest}).accept_signature == digest


def test_digest_ignores_everything_but_the_signature() -> None:
    other = manifest(
        [("input", "FP32", [3, 16]), IN_MASK], OUT, key="sha256:" + "1" * 64, createdAt="later"
    )
    assert signature_digest(other) == signature_digest(SERVING)


@pytest.mark.parametrize("case", [c for c in CASES if c[0] != "identical"], ids=lambda c: c[0])
def test_digest_changes_with_the_signature(case: tuple[str, EngineManifest, list[str]]) -> None:
    assert signature_digest(case[1]) != signature_digest(SERVING)


# --- the opt-in: held back with the digest, cut over once it is accepted ----------------------
OLD_KEY, NEW_KEY = "sha256:" + "a" * 64, "sha256:" + "b" * 64
NEW_INPUT = [{"name": "input", "dataType": "FP16", "dims": [16]}]


def serving_facts(conditions: list[dict[str, Any]] | None = None) -> Facts:
    """Facts of a ModelDeployment whose revision 1 serves the engine OLD_KEY."""
    md_body = body()
    md_body["status"] = {
        "revision": {"current": 1},
        "history": [
            {"revision": 1, "engineKey": OLD_KEY, "generation": 1, "state": "Serving", "time": "t"}
        ],
        "conditions": conditions or [],
    }
    observed = Observed(serving_entry=entry(OLD_KEY), store_entry=entry(NEW_KEY))
    context = DecideContext(T0, SETTINGS)
    facts, _ = read_facts(ModelDeployment.from_body(md_body), observed, context, "now")
    return facts


def built(inputs: list[dict[str, Any]]) -> BuildOutcome:
    """The wanted engine, built, with these inputs."""
    raw = {**entry(NEW_KEY), "inputs": inputs}
    return BuildOutcome(EngineManifest.model_validate(raw), ConditionStatus.TRUE, "Built", "", None)


def test_same_signature_is_not_blocked() -> None:
    assert signature_block(serving_facts(), built(entry(NEW_KEY)["inputs"])) is None


def test_incompatible_signature_is_blocked_with_its_digest() -> None:
    """The serving entry is read with the serving revision's key (it was '' before adeed5f)."""
    candidate = built(NEW_INPUT)
    block = signature_block(serving_facts(), candidate)
    assert candidate.manifest is not None
    assert block == (signature_digest(candidate.manifest), "input 'input': FP32 [16] -> FP16 [16]")


def test_held_back_names_the_difference_and_the_digest_once() -> None:
    events, (reason, message) = held_back(serving_facts(), "0123456789ab", "input 'x': A -> B")
    assert reason == "IncompatibleSignature"
    assert "input 'x': A -> B" in message
    assert 'acceptSignature: "0123456789ab"' in message
    assert [e.reason for e in events] == ["IncompatibleSignature"]
    seen = {"type": "Degraded", "status": "True", "reason": reason, "message": message}
    seen |= {"lastTransitionTime": "t"}
    again, _ = held_back(serving_facts([seen]), "0123456789ab", "input 'x': A -> B")
    assert again == ()


def test_a_long_difference_still_shows_the_digest() -> None:
    diff = "; ".join(
        f"new input 'encoder_state_{i:02d}_{'x' * 90}' (FP32 [16]) is required" for i in range(8)
    )
    _, (_, message) = held_back(serving_facts(), "0123456789ab", diff)
    assert 'acceptSignature: "0123456789ab"' in message


def incompatible_world() -> World:
    """Revision 1 serves; a new model's engine is built with an FP16 input."""
    world = World(body())
    world.serve()
    change(world, **{"model.source.sha256": "cd" * 32})
    world.start_build()
    world.finish_build()
    key = key_of(world.body)
    world.store[key] = entry_with(key, inputs=NEW_INPUT)
    return world


def test_reconcile_holds_back_then_cuts_over_once_accepted() -> None:
    world = incompatible_world()
    held = world.step()
    assert reasons(held) == ["BuildSucceeded", "IncompatibleSignature"]
    assert "resnet-r2" not in world.deployments  # no revision, no traffic
    assert conds(held.status)["Degraded"] == ("True", "IncompatibleSignature")
    digest = re.findall(r'acceptSignature: "([0-9a-f]{12})"', held.status["message"])[-1]
    change(world, **{"rollout.acceptSignature": digest})
    plan = world.step()
    assert reasons(plan) == ["RevisionCreated"]
    assert "cut over at once" in plan.events[0].message
    assert plan.status["rollout"]["cutOver"] is True
    world.roll_on(10)
    assert world.status()["revision"]["current"] == 2
    shares = [
        {w["revision"]: w["weight"] for w in p.status["traffic"]["weights"]} for p in world.plans
    ]
    assert {1: 50, 2: 50} not in shares  # validated, then all requests at once: no canary step


def entry_with(key: str, **fields: object) -> dict[str, object]:
    """A published entry for `key` with some fields changed, sealed again by the publisher."""
    import json

    from modelops_contract import integrity
    from tests.support.decide_world import unsigned_entry

    data = {**unsigned_entry(key), **fields}
    return dict(json.loads(integrity.signed_manifest_bytes(data, MAC_KEY.encode())))
