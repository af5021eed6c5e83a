"""What clients saw, from the router agents' pages (PURE: text in, figures out).

Each router pod's agent counts, per revision, the responses its clients got by status class and
the gRPC calls that failed inside an HTTP 200. A failure here is anything but a 2xx or 1xx/3xx
answer, plus every gRPC call with a non-zero status: Triton's own counters never see a request
its front end refused (a wrong shape is a 400 before the scheduler), the router does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

OK_CLASSES = frozenset({"1xx", "2xx", "3xx"})
_FAMILIES = {
    "modelops_router_responses",
    "modelops_router_grpc_errors",
    "modelops_router_weight",
    "modelops_router_applied_version",
}
MAX_REVISIONS = 64


class RouterPageError(ValueError):
    """Not an agent's page."""


@dataclass(frozen=True)
class RevisionCounts:
    """Cumulative counts of one revision on one router pod."""

    requests: float = 0.0
    failures: float = 0.0

    def plus(self, other: RevisionCounts) -> RevisionCounts:
        """Summed counts."""
        return RevisionCounts(self.requests + other.requests, self.failures + other.failures)


@dataclass(frozen=True)
class RouterSample:
    """One agent page: counts per revision, weights, and the table version HAProxy runs."""

    counts: Mapping[int, RevisionCounts] = field(default_factory=dict)
    weights: Mapping[int, float] = field(default_factory=dict)
    applied_version: int = -1


def parse_router_page(text: str) -> RouterSample:
    """Parse an agent's /metrics page (only the agent's own families are read)."""
    counts: dict[int, RevisionCounts] = {}
    weights: dict[int, float] = {}
    version = -1
    try:
        families = list(text_string_to_metric_families(text))
    except (ValueError, TypeError, IndexError) as exc:
        raise RouterPageError(f"not a Prometheus text page: {exc}") from exc
    for family in families:
        if family.name not in _FAMILIES:
            continue
        for sample in family.samples:
            revision_text = sample.labels.get("revision", "")
            value = float(sample.value)
            if family.name == "modelops_router_applied_version":
                version = int(value)
                continue
            if not revision_text.isdigit() or len(counts) > MAX_REVISIONS or value != value:
                continue
            revision = int(revision_text)
            if family.name == "modelops_router_weight":
                weights[revision] = value
                continue
            klass = sample.labels.get("class")
            failed = family.name == "modelops_router_grpc_errors" or (
                klass is not None and klass not in OK_CLASSES
            )
            requests = value if family.name == "modelops_router_responses" else 0.0
            before = counts.get(revision, RevisionCounts())
            counts[revision] = before.plus(RevisionCounts(requests, value if failed else 0.0))
    return RouterSample(counts, weights, version)


@dataclass(frozen=True)
class RevisionTraffic:
    """What one revision's clients saw over an interval, across router pods."""

    requests: float
    failures: float

    @property
    def error_rate(self) -> float | None:
        """Failed / all requests; None without traffic."""
        return self.failures / self.requests if self.requests > 0 else None


def router_interval(earlier: RouterSample, later: RouterSample) -> dict[int, RevisionTraffic]:
    """Per-revision traffic between two samples of one router pod (a restart counts from 0)."""
    out: dict[int, RevisionTraffic] = {}
    for revision, now in later.counts.items():
        before = earlier.counts.get(revision, RevisionCounts())
        if now.requests < before.requests or now.failures < before.failures:
            before = RevisionCounts()
        out[revision] = RevisionTraffic(
            now.requests - before.requests, now.failures - before.failures
        )
    return out


def combine(per_pod: Sequence[Mapping[int, RevisionTraffic]]) -> dict[int, RevisionTraffic]:
    """Traffic of every router pod added up, per revision."""
    total: dict[int, RevisionTraffic] = {}
    for pod in per_pod:
        for revision, seen in pod.items():
            before = total.get(revision, RevisionTraffic(0.0, 0.0))
            total[revision] = RevisionTraffic(
                before.requests + seen.requests, before.failures + seen.failures
            )
    return total
