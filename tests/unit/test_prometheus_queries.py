"""PromQL builders and the parsing of Prometheus answers (pure parts of metrics.prometheus)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelops_operator.metrics.prometheus import (
    Target,
    figures_from_results,
    parse_vector,
    prometheus_url,
    queries,
    selector,
    window,
)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"MODELOPS_PROMETHEUS_URL": "  "}, None),
        ({"MODELOPS_PROMETHEUS_URL": "http://prom:9090/"}, "http://prom:9090"),
    ],
)
def test_prometheus_url_from_env(environ: dict[str, str], expected: str | None) -> None:
    assert prometheus_url(environ) == expected


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (Target("resnet"), '{model="resnet"}'),
        (Target("resnet", "ml"), '{model="resnet",namespace="ml"}'),
        (
            Target("resnet", "ml", ("resnet-r3-b", "resnet-r3-a")),
            '{model="resnet",namespace="ml",pod=~"resnet\\\\-r3\\\\-a|resnet\\\\-r3\\\\-b"}',
        ),
        (Target('we"ird\\'), '{model="we\\"ird\\\\"}'),
        (Target("m", "ns", (), "kubernetes_namespace"), '{model="m",kubernetes_namespace="ns"}'),
    ],
)
def test_selector(target: Target, expected: str) -> None:
    assert selector(target) == expected


@pytest.mark.parametrize(("seconds", "expected"), [(15, "15s"), (14.2, "15s"), (0, "1s")])
def test_window(seconds: float, expected: str) -> None:
    assert window(seconds) == expected


def test_queries_exact_text() -> None:
    q = queries(Target("resnet", "ml"), 30)
    sel = '{model="resnet",namespace="ml"}'
    assert q["successes"] == f"sum(increase(nv_inference_request_success{sel}[30s]))"
    assert q["failures_by_reason"] == (
        f"sum by (reason) (increase(nv_inference_request_failure{sel}[30s]))"
    )
    assert q["queue_us"] == f"sum(increase(nv_inference_queue_duration_us{sel}[30s]))"
    assert q["inferences_per_second"] == f"sum(rate(nv_inference_count{sel}[30s]))"
    assert q["p99_ms"] == (
        'max(nv_inference_request_summary_us{model="resnet",namespace="ml",quantile="0.99"}) / 1000'
    )
    assert q["gpu_utilization"] == 'avg(nv_gpu_utilization{namespace="ml"}) * 100'
    assert q["pods"] == f"count(count by (pod) (nv_inference_request_success{sel}))"


@given(
    model=st.text(min_size=1, max_size=20),
    pods=st.lists(st.text(min_size=1, max_size=12), max_size=4),
    seconds=st.floats(min_value=0, max_value=86400),
)
def test_queries_are_balanced_and_quote_every_value(
    model: str, pods: list[str], seconds: float
) -> None:
    for promql in queries(Target(model, "ns", tuple(pods)), seconds).values():
        # Drop string literals, then brackets must balance: no value can break out of quotes.
        outside, in_string, escaped = [], False, False
        for ch in promql:
            if in_string:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
            else:
                outside.append(ch)
        assert not in_string
        code = "".join(outside)
        for open_, close in ("()", "{}", "[]"):
            assert code.count(open_) == code.count(close)
        assert "\n" not in promql


def _vector(*items: tuple[dict[str, str], str]) -> dict[str, object]:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": m, "value": [1700000000.0, v]} for m, v in items],
        },
    }


def test_parse_vector_drops_nan_and_keys_by_labels() -> None:
    got = parse_vector(_vector(({"reason": "BACKEND"}, "5"), ({"reason": "OTHER"}, "NaN")))
    assert got == {(("reason", "BACKEND"),): 5.0}


@pytest.mark.parametrize(
    "payload",
    [
        {"status": "error", "error": "parse error"},
        {"status": "success", "data": {"resultType": "matrix", "result": []}},
    ],
)
def test_parse_vector_rejects_errors(payload: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"Prometheus error|expected a vector"):
        parse_vector(payload)


Results = dict[str, dict[tuple[tuple[str, str], ...], float]]


def test_figures_from_results_derive_the_same_ratios() -> None:
    one: dict[tuple[tuple[str, str], ...], float] = {(): 0.0}
    results: Results = {
        "successes": {(): 950.0},
        "failures_by_reason": {(("reason", "BACKEND"),): 50.0},
        "inferences": {(): 4000.0},
        "executions": {(): 1000.0},
        "queue_us": {(): 95_000.0},
        "requests_per_second": {(): 1000 / 30},
        "inferences_per_second": {(): 4000 / 30},
        "p99_ms": {(): 12.5},
        "pending": {(): 2.0},
        "gpu_utilization": {},
        "pods": {(): 3.0},
    }
    f = figures_from_results(results, window_s=30, end=1e9)
    assert f is not None
    assert f.pods == 3
    assert f.error_rate == pytest.approx(0.05)
    assert f.avg_queue_us == pytest.approx(100.0)
    assert f.avg_batch == pytest.approx(4.0)
    assert f.p99_ms == 12.5
    assert f.gpu_utilization is None
    assert figures_from_results({**results, "pods": one}, window_s=30, end=0) is None
    idle: Results = {**results, "successes": one, "failures_by_reason": {}}
    g = figures_from_results(idle, window_s=30, end=0)
    assert g is not None
    assert g.error_rate is None
    assert g.p99_ms is None
