"""Interval figures from two samples, counter resets, aggregation over pods."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelops_operator.metrics.rates import aggregate, interval, to_metrics_status
from modelops_operator.metrics.sample import ModelCounters, TritonSample, parse_triton_metrics

DATA = Path(__file__).parent / "data"


def sample(name: str, t: float, model: str | None = None) -> TritonSample:
    return parse_triton_metrics((DATA / f"triton_metrics_{name}.txt").read_text(), t, model)


def counters(
    success: float,
    failed: float = 0.0,
    *,
    inference_count: float = 0.0,
    exec_count: float = 0.0,
    queue_duration_us: float = 0.0,
) -> ModelCounters:
    return ModelCounters(
        success=success,
        failures_by_reason={"BACKEND": failed},
        inference_count=inference_count,
        exec_count=exec_count,
        queue_duration_us=queue_duration_us,
    )


def test_recorded_interval_of_the_faulty_model() -> None:
    f = interval(sample("cpu_a", 100.0, "faulty"), sample("cpu_b", 104.0, "faulty"))
    assert f.seconds == 4.0
    assert f.end == 104.0
    assert f.requests == 40  # 30 ok + 10 failed
    assert f.requests_per_second == pytest.approx(10.0)
    assert f.inferences_per_second == pytest.approx(60 / 4)
    assert f.error_rate == pytest.approx(0.25)
    assert f.error_rate_by_reason == {"BACKEND": pytest.approx(0.25)}
    assert f.avg_queue_us == pytest.approx((1766 - 571) / 30)
    assert f.avg_batch == pytest.approx(60 / 40)
    assert f.p99_ms == pytest.approx(2.530)
    assert not f.counter_reset


def test_recorded_interval_of_the_healthy_model() -> None:
    f = interval(sample("cpu_a", 0.0, "resnet"), sample("cpu_b", 2.0, "resnet"))
    assert f.error_rate == 0.0
    assert f.avg_batch == pytest.approx(2.0)
    assert f.p99_ms == pytest.approx(0.736)


def test_counter_reset_counts_the_new_sample_from_zero() -> None:
    # b then a: every counter went down, as after a pod restart.
    f = interval(sample("cpu_b", 0.0, "faulty"), sample("cpu_a", 10.0, "faulty"))
    assert f.counter_reset
    assert f.successes == 15
    assert f.failures == 5
    assert f.requests_per_second == pytest.approx(2.0)
    assert f.error_rate == pytest.approx(0.25)


def test_idle_interval_has_no_ratios_and_no_stale_p99() -> None:
    s = sample("cpu_b", 0.0, "resnet")
    f = interval(s, replace(s, timestamp=15.0))
    assert f.requests == 0
    assert f.error_rate is None
    assert f.avg_queue_us is None
    assert f.avg_batch is None
    assert f.p99_ms is None  # the summary window still holds old latencies


@pytest.mark.parametrize("dt", [0.0, -1.0])
def test_samples_out_of_order_are_rejected(dt: float) -> None:
    s = sample("cpu_a", 5.0)
    with pytest.raises(ValueError, match="time order"):
        interval(s, replace(s, timestamp=5.0 + dt))


def test_aggregate_weights_ratios_by_their_denominators() -> None:
    zero = TritonSample(0.0, ModelCounters(), frozenset({"m"}))
    busy = interval(
        zero,
        TritonSample(
            10.0,
            counters(990, 10, queue_duration_us=990_000, inference_count=4000, exec_count=1000),
            frozenset({"m"}),
            gpu_utilization=90.0,
        ),
    )
    quiet = interval(
        zero,
        TritonSample(
            5.0,
            counters(5, 5, queue_duration_us=50, inference_count=5, exec_count=10),
            frozenset({"m"}),
            gpu_utilization=30.0,
        ),
    )
    agg = aggregate([busy, quiet])
    assert agg is not None
    assert agg.pods == 2
    assert agg.requests_per_second == pytest.approx(100.0 + 2.0)
    # A mean of per-pod error rates would say 0.255; the weighted one is 15 / 1010.
    assert agg.error_rate == pytest.approx(15 / 1010)
    assert agg.avg_queue_us == pytest.approx(990_050 / 995)
    assert agg.avg_batch == pytest.approx(4005 / 1010)
    assert agg.gpu_utilization == pytest.approx(60.0)
    assert agg.end == 5.0  # the older pod decides staleness
    assert aggregate([]) is None


def test_metrics_status_rounds_and_handles_no_data() -> None:
    f = interval(sample("cpu_a", 0.0, "faulty"), sample("cpu_b", 3.0, "faulty"))
    status = to_metrics_status(f, "2025-01-01T00:00:00Z").to_wire()
    assert status["errorRate"] == 0.25
    assert status["inferencesPerSecond"] == 20.0
    assert status["observedAt"] == "2025-01-01T00:00:00Z"
    assert to_metrics_status(None, "t").to_wire() == {"observedAt": "t"}


_value = st.floats(min_value=0, max_value=1e12, allow_nan=False)


@given(
    before=st.tuples(_value, _value, _value, _value, _value),
    after=st.tuples(_value, _value, _value, _value, _value),
    dt=st.floats(min_value=1e-3, max_value=1e5),
)
def test_no_figure_is_ever_negative(
    before: tuple[float, ...], after: tuple[float, ...], dt: float
) -> None:
    def mk(v: tuple[float, ...], t: float) -> TritonSample:
        c = counters(v[0], v[1], inference_count=v[2], exec_count=v[3], queue_duration_us=v[4])
        return TritonSample(t, c, frozenset({"m"}))

    f = interval(mk(before, 0.0), mk(after, dt))
    for value in (
        f.requests,
        f.requests_per_second,
        f.inferences_per_second,
        f.queue_us,
        f.executions,
        f.error_rate or 0.0,
        f.avg_queue_us or 0.0,
        f.avg_batch or 0.0,
    ):
        assert value >= 0
    assert 0.0 <= (f.error_rate or 0.0) <= 1.0
    went_down = any(a < b for a, b in zip(after, before, strict=True))
    assert f.counter_reset == went_down
    if went_down:
        assert f.requests == pytest.approx(after[0] + after[1])
