"""spec.rollout (traffic, noTraffic, acceptSignature) and spec.validation: what the API server
rejects (schema + CEL, via the harness), and that pydantic rejects the same input."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from modelops_contract.manifest import EngineManifest
from modelops_operator.api import ModelDeploymentSpec, format_validation_error, rules
from modelops_operator.decide.signature import signature_digest
from tests.support.crd import admit, validate
from tests.support.decide_world import entry
from tests.unit.test_crd_cel import SHA, changed

GATEWAY = {"parentRefs": [{"name": "public-gw", "namespace": "infra", "sectionName": "https"}]}
SOURCE = {"uri": "https://data.example.com/set.npz", "sha256": SHA}


def rollout(**fields: Any) -> dict[str, Any]:
    """A ModelDeployment with these spec.rollout fields."""
    return changed(spec__rollout=fields)


def traffic(**fields: Any) -> dict[str, Any]:
    """A ModelDeployment with these spec.rollout.traffic fields."""
    return rollout(traffic=fields)


def validation(**fields: Any) -> dict[str, Any]:
    """A ModelDeployment with this spec.validation."""
    return changed(spec__validation=fields)


# (id, object, a field name the error must name)
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("mode-unknown", traffic(mode="Istio"), "mode"),
    ("cel-gateway-mode-without-gateway", traffic(mode="GatewayAPI"), "gatewayAPI"),
    ("gateway-no-parents", traffic(mode="GatewayAPI", gatewayAPI={"parentRefs": []}), "parentRefs"),
    ("gateway-parents-missing", traffic(mode="GatewayAPI", gatewayAPI={}), "parentRefs"),
    (
        "gateway-nine-parents",
        traffic(
            mode="GatewayAPI", gatewayAPI={"parentRefs": [{"name": f"g{i}"} for i in range(9)]}
        ),
        "parentRefs",
    ),
    (
        "gateway-parent-name",
        traffic(mode="GatewayAPI", gatewayAPI={"parentRefs": [{"name": "Public_GW"}]}),
        "name",
    ),
    (
        "gateway-hostname-too-long",
        traffic(mode="GatewayAPI", gatewayAPI={**GATEWAY, "hostnames": ["h" * 254]}),
        "hostnames",
    ),
    (
        "gateway-17-hostnames",
        traffic(mode="GatewayAPI", gatewayAPI={**GATEWAY, "hostnames": ["a.example.com"] * 17}),
        "hostnames",
    ),
    ("router-replicas-0", traffic(router={"replicas": 0}), "replicas"),
    ("router-replicas-21", traffic(router={"replicas": 21}), "replicas"),
    ("traffic-unknown-field", traffic(weights={"1": 100}), "weights"),
    ("no-traffic-unknown", rollout(noTraffic="Never"), "noTraffic"),
    ("signature-uppercase", rollout(acceptSignature="0123456789AB"), "acceptSignature"),
    ("signature-11-hex", rollout(acceptSignature="0123456789a"), "acceptSignature"),
    ("signature-13-hex", rollout(acceptSignature="0123456789abc"), "acceptSignature"),
    ("signature-not-hex", rollout(acceptSignature="0123456789ag"), "acceptSignature"),
    ("signature-full-digest", rollout(acceptSignature="sha256:0123456789ab"), "acceptSignature"),
    ("signature-newline", rollout(acceptSignature="0123456789a\n"), "acceptSignature"),
    ("validation-no-source", validation(minAccuracy=0.9), "source"),
    ("cel-validation-no-goal", validation(source=SOURCE), "minAccuracy"),
    (
        "cel-validation-both-goals",
        validation(source=SOURCE, minAccuracy=0.9, minAgreement=0.9),
        "minAccuracy",
    ),
    ("validation-accuracy-1.5", validation(source=SOURCE, minAccuracy=1.5), "minAccuracy"),
    ("validation-agreement-negative", validation(source=SOURCE, minAgreement=-0.1), "minAgreement"),
    (
        "validation-uri-http",
        validation(source={**SOURCE, "uri": "http://data.example.com/set.npz"}, minAccuracy=0.9),
        "uri",
    ),
    (
        "cel-validation-s3-bad-bucket",
        validation(source={**SOURCE, "uri": "s3://Bad_Bucket/set.npz"}, minAccuracy=0.9),
        "uri",
    ),
    (
        "validation-sha-short",
        validation(source={**SOURCE, "sha256": SHA[:10]}, minAgreement=0.9),
        "sha256",
    ),
    ("validation-unknown-field", validation(source=SOURCE, minAccuracy=0.9, labels="y"), "labels"),
]

DIGEST = signature_digest(EngineManifest.model_validate(entry("sha256:" + "0" * 64)))

VALID: list[tuple[str, dict[str, Any]]] = [
    ("router-default", traffic()),
    ("router-replicas-20", traffic(mode="Router", router={"replicas": 20})),
    ("gateway", traffic(mode="GatewayAPI", gatewayAPI=GATEWAY)),
    (
        "gateway-hostnames",
        traffic(mode="GatewayAPI", gatewayAPI={**GATEWAY, "hostnames": ["models.example.com"]}),
    ),
    ("replicas", traffic(mode="Replicas")),
    ("replicas-gateway-ignored", traffic(mode="Replicas", gatewayAPI=GATEWAY)),
    ("no-traffic-wait", rollout(noTraffic="Wait")),
    ("signature-digest", rollout(acceptSignature=DIGEST)),
    ("validation-accuracy", validation(source=SOURCE, minAccuracy=0.0)),
    ("validation-agreement", validation(source=SOURCE, minAgreement=1)),
    (
        "validation-pvc",
        validation(source={"uri": "pvc://sets/r/set.npz", "sha256": SHA}, minAgreement=0.99),
    ),
]


@pytest.mark.parametrize(("obj", "field"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_api_server_rejects(obj: dict[str, Any], field: str) -> None:
    errors = validate(obj)
    assert errors, "accepted"
    assert any(field in e for e in errors), errors


@pytest.mark.parametrize(("obj", "field"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_operator_rejects_the_same(obj: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        ModelDeploymentSpec.model_validate(obj["spec"])
    assert field in format_validation_error(info.value)


@pytest.mark.parametrize("obj", [c[1] for c in VALID], ids=[c[0] for c in VALID])
def test_valid_rollouts_are_accepted_by_both(obj: dict[str, Any]) -> None:
    assert validate(obj) == []
    ModelDeploymentSpec.model_validate(obj["spec"])


@pytest.mark.parametrize(
    ("obj", "path", "message"),
    [
        (traffic(mode="GatewayAPI"), "spec.rollout.traffic.mode", rules.MSG_GATEWAY_REQUIRED),
        (validation(source=SOURCE), "spec.validation.minAccuracy", rules.MSG_VALIDATION_GOAL),
    ],
    ids=["gateway", "validation-goal"],
)
def test_cross_field_rules_give_one_message_on_both_sides(
    obj: dict[str, Any], path: str, message: str
) -> None:
    assert validate(obj) == [f"{path}: {message}"]
    with pytest.raises(ValidationError) as info:
        ModelDeploymentSpec.model_validate(obj["spec"])
    assert format_validation_error(info.value) == message


def test_rollout_defaults_agree_with_pydantic() -> None:
    stored, errors = admit(rollout(traffic={}))
    assert errors == []
    server = stored["spec"]["rollout"]
    model = ModelDeploymentSpec.model_validate(rollout(traffic={})["spec"]).to_wire()["rollout"]
    assert server["noTraffic"] == model["noTraffic"] == "Promote"
    assert server["traffic"]["mode"] == model["traffic"]["mode"] == "Router"
    assert model["traffic"]["router"]["replicas"] == 2  # the server stores no router: {} absent
    assert "router" not in server["traffic"]
    assert "acceptSignature" not in server


def test_gateway_rule_runs_after_the_mode_default() -> None:
    """An empty traffic object defaults to Router, which needs no gateway."""
    assert validate(rollout(traffic={"gatewayAPI": GATEWAY})) == []
