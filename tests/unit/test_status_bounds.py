"""Free text in status is cut to what the CRD allows, so a status patch is never rejected (a
rejected patch would lose the analysis count it carries, and a failing canary would stall)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from modelops_operator.api import ModelDeploymentStatus
from modelops_operator.api.status import (
    Condition,
    HistoryEntry,
    RolloutProgress,
    ValidationStatus,
)
from modelops_operator.decide.status import bounded
from tests.support.crd import schema_errors

SHA = "9f2c" + "0" * 60


def md_with(status: dict[str, object]) -> dict[str, object]:
    """A valid ModelDeployment carrying `status`."""
    return {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "m", "namespace": "ml"},
        "spec": {"model": {"source": {"uri": "https://models.example.com/m.onnx", "sha256": SHA}}},
        "status": status,
    }


def long_status(text: str) -> ModelDeploymentStatus:
    """A status whose free-text fields hold `text`, built the way decide builds it (model_copy
    does not validate)."""
    return ModelDeploymentStatus().model_copy(
        update={
            "message": text,
            "rollout": RolloutProgress().model_copy(update={"note": text}),
            "conditions": [
                Condition(
                    type="Ready",
                    status="False",
                    reason="RollingOut",
                    last_transition_time="2026-11-30T00:00:00Z",
                ).model_copy(update={"message": text * 8})
            ],
            "history": [
                HistoryEntry(
                    revision=1,
                    engine_key="sha256:" + "a" * 64,
                    generation=1,
                    state="Failed",
                    time="2026-11-30T00:00:00Z",
                ).model_copy(update={"reason": text})
            ],
            "validation": ValidationStatus(revision=1, passed=False).model_copy(
                update={"message": text}
            ),
        }
    )


def test_a_5000_character_note_is_cut_and_the_status_fits_the_crd() -> None:
    text = "canary errorRate 0.5 > 0.01; " * 180  # ~5,200 characters
    wire = bounded(long_status(text))
    assert len(wire["rollout"]["note"]) == 1024
    assert wire["rollout"]["note"].endswith("...")
    assert len(wire["history"][0]["reason"]) == 1024
    assert len(wire["validation"]["message"]) == 1024
    assert len(wire["message"]) <= 4096
    assert len(wire["conditions"][0]["message"]) == 32768
    assert schema_errors(md_with(wire)) == []
    # Without the cut, the API server would reject this status.
    assert schema_errors(md_with(long_status(text).to_wire())) != []


@given(st.text(max_size=3000))
def test_text_within_the_limit_is_kept_as_it_is(text: str) -> None:
    short = text[:1024]
    wire = bounded(
        ModelDeploymentStatus().model_copy(
            update={"rollout": RolloutProgress().model_copy(update={"note": short})}
        )
    )
    assert wire["rollout"].get("note", "") == short or (
        short == "" and "note" not in wire["rollout"]
    )
