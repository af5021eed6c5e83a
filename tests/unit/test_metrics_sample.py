"""Parsing Triton /metrics pages (recorded from the real server, and a GPU-shaped page)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelops_operator.metrics.sample import MetricsParseError, parse_triton_metrics

DATA = Path(__file__).parent / "data"


def page(name: str) -> str:
    return (DATA / f"triton_metrics_{name}.txt").read_text()


def test_one_model_counters_from_recorded_page() -> None:
    s = parse_triton_metrics(page("cpu_b"), 12.5, model="faulty")
    c = s.counters
    assert s.timestamp == 12.5
    assert s.models == frozenset({"faulty"})
    assert c.success == 45
    assert c.failures_by_reason["BACKEND"] == 15
    assert c.failure == 15
    assert c.requests == 60
    assert c.inference_count == 90
    assert c.exec_count == 60
    assert c.queue_duration_us == 1766
    assert c.pending == 0
    assert c.request_quantiles_us[0.99] == 2530
    assert c.queue_quantiles_us[0.99] == 73
    assert s.gpu_utilization is None


def test_all_models_summed_and_quantiles_take_the_worst() -> None:
    s = parse_triton_metrics(page("cpu_b"), 0.0)
    assert s.models == frozenset({"faulty", "resnet"})
    assert s.counters.success == 45 + 60
    assert s.counters.inference_count == 90 + 120
    assert s.counters.queue_duration_us == 1766 + 12718
    assert s.counters.request_quantiles_us[0.99] == max(2530, 736)


def test_versions_summed_failures_by_reason_and_gpu_percent() -> None:
    s = parse_triton_metrics(page("gpu"), 0.0, model="resnet")
    c = s.counters
    assert c.success == 1500
    assert dict(c.failures_by_reason) == {"BACKEND": 10, "REJECTED": 5, "OTHER": 0}
    assert c.pending == 4
    assert c.request_quantiles_us[0.99] == 12000
    assert s.gpu_utilization == pytest.approx(70.0)


def test_page_without_type_lines_parses_the_same() -> None:
    stripped = "\n".join(ln for ln in page("cpu_b").splitlines() if not ln.startswith("#")) + "\n"
    a = parse_triton_metrics(stripped, 0.0, model="resnet").counters
    b = parse_triton_metrics(page("cpu_b"), 0.0, model="resnet").counters
    assert a.success == b.success == 60
    assert a.queue_duration_us == b.queue_duration_us


@pytest.mark.parametrize(
    ("text", "model", "match"),
    [
        ("", None, "no nv_inference"),
        ("nv_cpu_utilization 0.5\n", None, "no nv_inference"),
        ('nv_inference_count{model="a",version="1"} 3\n', "b", "model 'b' not on"),
        ("this is { not prometheus\n", None, "no nv_inference"),
        ('nv_inference_count{model="a" 3\n', None, "not a Prometheus"),
    ],
)
def test_unusable_pages_raise_a_typed_error(text: str, model: str | None, match: str) -> None:
    with pytest.raises(MetricsParseError, match=match):
        parse_triton_metrics(text, 0.0, model=model)


def test_nan_quantiles_of_an_idle_summary_are_ignored() -> None:
    text = (
        'nv_inference_count{model="m",version="1"} 0\n'
        'nv_inference_request_summary_us{model="m",version="1",quantile="0.99"} NaN\n'
    )
    s = parse_triton_metrics(text, 0.0)
    assert dict(s.counters.request_quantiles_us) == {}
