"""One canary analysis: interval figures judged against the spec's gates (PURE).

Counting analyses in a row, and what a count means for the rollout, is decide/rollout.py's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..api import CanarySpec
from ..metrics.rates import IntervalFigures
from ..metrics.router import RevisionTraffic


class Verdict(StrEnum):
    """Outcome of one analysis."""

    PASS = "pass"  # noqa: S105 - a verdict, not a credential
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Analysis:
    """One analysis: the verdict, the failed gates (each naming threshold and figures), a note."""

    verdict: Verdict
    reasons: tuple[str, ...] = ()
    note: str | None = None
    no_traffic: bool = False  # the interval had no client request at all

    @property
    def message(self) -> str:
        """Reasons and note in one line, for status and Events."""
        parts = list(self.reasons) + ([self.note] if self.note else [])
        return "; ".join(parts) if parts else self.verdict.value


def analyse(figures: IntervalFigures | None, spec: CanarySpec, min_requests: int = 1) -> Analysis:
    """Judge one interval of canary figures against the spec's gates.

    No figures or fewer than `min_requests` requests is inconclusive, never a pass and never a
    rollback on its own. A failed error gate fails even when p99 is unknown; a requested p99
    gate without a p99 figure (summary latencies off) leaves a clean interval inconclusive.
    """
    if figures is None:
        return Analysis(Verdict.INCONCLUSIVE, note="no metrics from the canary pods")
    if figures.requests < max(min_requests, 1):
        return Analysis(
            Verdict.INCONCLUSIVE,
            no_traffic=figures.requests == 0,
            note=f"canary received no traffic in the last {figures.seconds:.0f}s"
            if figures.requests == 0
            else f"canary received {figures.requests:.0f} requests in {figures.seconds:.0f}s, "
            f"fewer than the {min_requests} needed to judge",
        )
    reasons: list[str] = []
    error_rate = figures.error_rate or 0.0
    if error_rate > spec.max_error_rate:
        by_reason = ", ".join(
            f"{r} {v:.0f}" for r, v in sorted(figures.failures_by_reason.items()) if v > 0
        )
        reasons.append(
            f"errorRate {error_rate:.3g} > maxErrorRate {spec.max_error_rate:g} "
            f"({figures.failures:.0f} of {figures.requests:.0f} requests failed: {by_reason})"
        )
    limit = spec.max_p99_latency_ms
    if limit is not None and figures.p99_ms is not None and figures.p99_ms > limit:
        reasons.append(f"p99LatencyMs {figures.p99_ms:.3g} > maxP99LatencyMs {limit:g}")
    if reasons:
        return Analysis(Verdict.FAIL, tuple(reasons))
    if limit is not None and figures.p99_ms is None:
        return Analysis(
            Verdict.INCONCLUSIVE,
            note="no p99 latency from Triton (summary latencies off?); maxP99LatencyMs "
            "cannot be checked",
        )
    p99 = f", p99LatencyMs {figures.p99_ms:.3g}" if figures.p99_ms is not None else ""
    return Analysis(
        Verdict.PASS,
        note=f"errorRate {error_rate:.3g} over {figures.requests:.0f} requests{p99}",
    )


def analyse_clients(
    canary: RevisionTraffic | None,
    stable: RevisionTraffic | None,
    triton: IntervalFigures | None,
    spec: CanarySpec,
) -> Analysis:
    """Judge one interval by what the router's clients saw (Router traffic mode).

    The canary fails when its error rate exceeds the stable revision's by more than
    maxErrorRate (errors both revisions share, such as clients sending a wrong shape to both,
    are not the canary's fault). Latency comes from Triton's summary on the canary's pods.
    """
    if canary is None or canary.requests <= 0:
        return Analysis(
            Verdict.INCONCLUSIVE,
            note="canary received no client traffic through the router",
            no_traffic=True,
        )
    rate = canary.failures / canary.requests
    baseline = (stable.error_rate if stable is not None else None) or 0.0
    reasons: list[str] = []
    if rate - baseline > spec.max_error_rate:
        reasons.append(
            f"client errorRate {rate:.3g} ({canary.failures:.0f} of {canary.requests:.0f} "
            f"requests failed at the router) exceeds the stable revision's {baseline:.3g} by "
            f"more than maxErrorRate {spec.max_error_rate:g}"
        )
    limit = spec.max_p99_latency_ms
    p99 = triton.p99_ms if triton is not None else None
    if limit is not None and p99 is not None and p99 > limit:
        reasons.append(f"p99LatencyMs {p99:.3g} > maxP99LatencyMs {limit:g}")
    if reasons:
        return Analysis(Verdict.FAIL, tuple(reasons))
    if limit is not None and p99 is None:
        return Analysis(
            Verdict.INCONCLUSIVE, note="no p99 latency from Triton; maxP99LatencyMs unchecked"
        )
    return Analysis(
        Verdict.PASS,
        note=f"client errorRate {rate:.3g} over {canary.requests:.0f} requests "
        f"(stable {baseline:.3g})",
    )
