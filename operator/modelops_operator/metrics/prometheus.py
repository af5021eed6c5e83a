"""Optional source: the same interval figures from Prometheus (when MODELOPS_PROMETHEUS_URL is set).

The PromQL builders are pure and unit-tested; the HTTP call is thin. Queries ask only for the
increases over the window; every ratio is then derived by the same code as for scraped pods
(`IntervalFigures`), so both sources agree on what "error rate" or "queue time" means.
Assumes Prometheus scrapes the Triton pods with `namespace` and `pod` target labels (the
usual kubernetes_sd relabelling); other label names can be passed in.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from .rates import P99, IntervalFigures
from .scrape import DEFAULT_TIMEOUT_S, Missing, MissingReason

ENV_VAR = "MODELOPS_PROMETHEUS_URL"


def prometheus_url(environ: Mapping[str, str]) -> str | None:
    """The Prometheus base URL from the environment, or None when unset or blank."""
    url = environ.get(ENV_VAR, "").strip().rstrip("/")
    return url or None


def _quote(value: str) -> str:
    """A PromQL double-quoted string literal."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


@dataclass(frozen=True)
class Target:
    """Which series to read: one model in one namespace, optionally only some pods."""

    model: str
    namespace: str | None = None
    pods: tuple[str, ...] = ()
    namespace_label: str = "namespace"
    pod_label: str = "pod"


def selector(target: Target, *, with_model: bool = True) -> str:
    """The label matcher `{model="m",namespace="ns",pod=~"a|b"}` for a target."""
    matchers = []
    if with_model:
        matchers.append(f"model={_quote(target.model)}")
    if target.namespace is not None:
        matchers.append(f"{target.namespace_label}={_quote(target.namespace)}")
    if target.pods:
        alternatives = "|".join(re.escape(p) for p in sorted(set(target.pods)))
        matchers.append(f"{target.pod_label}=~{_quote(alternatives)}")
    return "{" + ",".join(matchers) + "}"


def window(seconds: float) -> str:
    """A PromQL range duration in whole seconds (at least 1s)."""
    return f"{max(1, math.ceil(seconds))}s"


def queries(target: Target, window_s: float) -> dict[str, str]:
    """PromQL for every figure over the window, keyed by the IntervalFigures input it feeds."""
    sel, w = selector(target), window(window_s)
    gpu_sel = selector(target, with_model=False)

    def increase(metric: str) -> str:
        return f"sum(increase({metric}{sel}[{w}]))"

    def rate(metric: str) -> str:
        return f"sum(rate({metric}{sel}[{w}]))"

    p99_sel = sel[:-1] + f',quantile="{P99}"' + "}"
    return {
        "successes": increase("nv_inference_request_success"),
        "failures_by_reason": (
            f"sum by (reason) (increase(nv_inference_request_failure{sel}[{w}]))"
        ),
        "inferences": increase("nv_inference_count"),
        "executions": increase("nv_inference_exec_count"),
        "queue_us": increase("nv_inference_queue_duration_us"),
        "requests_per_second": (
            f"{rate('nv_inference_request_success')} + "
            f"(sum(rate(nv_inference_request_failure{sel}[{w}])) or vector(0))"
        ),
        "inferences_per_second": rate("nv_inference_count"),
        "p99_ms": f"max(nv_inference_request_summary_us{p99_sel}) / 1000",
        "pending": f"sum(nv_inference_pending_request_count{sel})",
        "gpu_utilization": f"avg(nv_gpu_utilization{gpu_sel}) * 100",
        "pods": f"count(count by ({target.pod_label}) (nv_inference_request_success{sel}))",
    }


def parse_vector(payload: Mapping[str, Any]) -> dict[tuple[tuple[str, str], ...], float]:
    """Instant-vector result of /api/v1/query as {sorted labels: value}; NaN/Inf dropped."""
    if payload.get("status") != "success":
        raise ValueError(f"Prometheus error: {payload.get('error', payload.get('status'))}")
    data = payload.get("data") or {}
    if data.get("resultType") != "vector":
        raise ValueError(f"expected a vector, got {data.get('resultType')!r}")
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for item in data.get("result") or []:
        value = float(item["value"][1])
        if math.isfinite(value):
            out[tuple(sorted((item.get("metric") or {}).items()))] = value
    return out


def figures_from_results(
    results: Mapping[str, Mapping[tuple[tuple[str, str], ...], float]],
    *,
    window_s: float,
    end: float,
) -> IntervalFigures | None:
    """Assemble IntervalFigures from parsed query results; None when no pod reported."""

    def scalar(name: str) -> float | None:
        values = list(results.get(name, {}).values())
        return values[0] if values else None

    pods = int(scalar("pods") or 0)
    if pods == 0:
        return None
    reasons: dict[str, float] = {}
    for labels, value in results.get("failures_by_reason", {}).items():
        reason = dict(labels).get("reason", "OTHER")
        reasons[reason] = reasons.get(reason, 0.0) + max(value, 0.0)
    successes = max(scalar("successes") or 0.0, 0.0)
    requests = successes + sum(reasons.values())
    gpu = scalar("gpu_utilization")
    return IntervalFigures(
        seconds=window_s,
        end=end,
        pods=pods,
        successes=successes,
        failures_by_reason=reasons,
        inferences=max(scalar("inferences") or 0.0, 0.0),
        executions=max(scalar("executions") or 0.0, 0.0),
        queue_us=max(scalar("queue_us") or 0.0, 0.0),
        requests_per_second=max(scalar("requests_per_second") or 0.0, 0.0),
        inferences_per_second=max(scalar("inferences_per_second") or 0.0, 0.0),
        p99_ms=scalar("p99_ms") if requests > 0 else None,
        pending=scalar("pending") or 0.0,
        gpu_utilization=gpu,
        gpu_pods=pods if gpu is not None else 0,
    )


async def _query(
    session: aiohttp.ClientSession, base_url: str, promql: str, at: float, timeout_s: float
) -> dict[tuple[tuple[str, str], ...], float]:
    async with session.get(
        f"{base_url}/api/v1/query",
        params={"query": promql, "time": f"{at:.3f}"},
        timeout=aiohttp.ClientTimeout(total=timeout_s),
    ) as resp:
        payload = await resp.json(content_type=None)
        if not isinstance(payload, dict):
            raise ValueError("Prometheus answered something that is not a JSON object")
        return parse_vector(payload)


async def query_figures(
    session: aiohttp.ClientSession,
    base_url: str,
    target: Target,
    *,
    window_s: float,
    at: float,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> IntervalFigures | Missing:
    """The figures of `target` over [at - window_s, at] (Unix seconds); never raises."""
    key = f"prometheus:{target.model}"
    built = queries(target, window_s)
    try:
        answers: Sequence[dict[tuple[tuple[str, str], ...], float]] = await asyncio.gather(
            *(_query(session, base_url, q, at, timeout_s) for q in built.values())
        )
    except TimeoutError:
        return Missing(key, MissingReason.TIMEOUT, f"Prometheus {base_url}: no answer")
    except (aiohttp.ClientError, OSError, ValueError, KeyError, TypeError) as exc:
        return Missing(key, MissingReason.UNREACHABLE, f"Prometheus {base_url}: {exc!r}")
    figures = figures_from_results(
        dict(zip(built, answers, strict=True)), window_s=window_s, end=at
    )
    if figures is None:
        return Missing(key, MissingReason.PARSE, f"Prometheus has no series for {selector(target)}")
    return figures
