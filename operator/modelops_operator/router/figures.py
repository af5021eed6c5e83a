"""What clients saw, per revision: HAProxy's per-slot counters turned into per-revision ones.

HAProxy counts per server slot and never forgets; a slot can carry another revision later. The
ledger takes a baseline when a revision takes a slot, so each revision's counters start at zero
and belong to it alone. HTTP/2 says 200 for a gRPC call that failed in its headers, so those are
counted from the gRPC backend's stick table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

PROTOCOLS = ("http", "grpc")
CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "other")


@dataclass(frozen=True)
class SlotCounters:
    """Counters of one slot of one backend at one moment."""

    responses: Mapping[str, int] = field(default_factory=dict)  # class -> count
    connection_errors: int = 0
    response_errors: int = 0
    grpc_errors: int = 0

    def minus(self, base: SlotCounters) -> SlotCounters:
        """Counters since `base`; a counter that went down means HAProxy restarted: all count."""
        if any(self.responses.get(k, 0) < v for k, v in base.responses.items()):
            return self
        return SlotCounters(
            responses={k: v - base.responses.get(k, 0) for k, v in self.responses.items()},
            connection_errors=max(0, self.connection_errors - base.connection_errors),
            response_errors=max(0, self.response_errors - base.response_errors),
            grpc_errors=max(0, self.grpc_errors - base.grpc_errors),
        )


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def slot_counters(
    stats: Iterable[Mapping[str, str]], grpc_table: Mapping[str, Mapping[str, int]]
) -> dict[tuple[str, str], SlotCounters]:
    """(backend, slot) -> counters, from `show stat` rows and the gRPC stick table."""
    out: dict[tuple[str, str], SlotCounters] = {}
    for row in stats:
        backend, slot = row.get("pxname", ""), row.get("svname", "")
        if backend not in PROTOCOLS or slot in ("FRONTEND", "BACKEND"):
            continue
        out[(backend, slot)] = SlotCounters(
            responses={c: _int(row.get(f"hrsp_{c}")) for c in CLASSES},
            connection_errors=_int(row.get("econ")),
            response_errors=_int(row.get("eresp")),
            grpc_errors=(grpc_table.get(slot) or {}).get("gpc0", 0) if backend == "grpc" else 0,
        )
    return out


@dataclass
class Ledger:
    """Per-revision totals across slot reassignments (the agent's memory)."""

    owners: dict[tuple[str, str], int] = field(default_factory=dict)
    baselines: dict[tuple[str, str], SlotCounters] = field(default_factory=dict)
    totals: dict[tuple[int, str], SlotCounters] = field(default_factory=dict)
    last: dict[tuple[str, str], SlotCounters] = field(default_factory=dict)

    def update(
        self, owners: Mapping[tuple[str, str], int], now: Mapping[tuple[str, str], SlotCounters]
    ) -> None:
        """Fold a new reading in; `owners` maps (backend, slot) to the revision it carries."""
        for place, counters in now.items():
            revision = owners.get(place)
            previous = self.last.get(place, SlotCounters())
            delta = counters.minus(previous)
            if self.owners.get(place) is not None:
                key = (self.owners[place], place[0])
                self.totals[key] = _add(self.totals.get(key, SlotCounters()), delta)
            self.last[place] = counters
            if revision is None:
                self.owners.pop(place, None)
            else:
                self.owners[place] = revision

    def metrics(self, weights: Mapping[int, int], version: int) -> list[Metric]:
        """Prometheus families: requests and failures per revision and protocol, weights."""
        responses = CounterMetricFamily(
            "modelops_router_responses",
            "Responses sent to clients, by revision, protocol and status class.",
            labels=["revision", "protocol", "class"],
        )
        grpc_errors = CounterMetricFamily(
            "modelops_router_grpc_errors",
            "gRPC calls answered with a non-zero grpc-status, by revision.",
            labels=["revision"],
        )
        errors = CounterMetricFamily(
            "modelops_router_backend_errors",
            "Connections to a revision that failed, or answers that broke off.",
            labels=["revision", "protocol"],
        )
        for (revision, protocol), total in sorted(self.totals.items()):
            for klass in CLASSES:
                value = total.responses.get(klass, 0)
                responses.add_metric([str(revision), protocol, klass], value)
            errors.add_metric(
                [str(revision), protocol], total.connection_errors + total.response_errors
            )
            if protocol == "grpc":
                grpc_errors.add_metric([str(revision)], total.grpc_errors)
        weight = GaugeMetricFamily(
            "modelops_router_weight", "Percent of requests each revision gets.", labels=["revision"]
        )
        for revision, value in sorted(weights.items()):
            weight.add_metric([str(revision)], value)
        applied = GaugeMetricFamily(
            "modelops_router_applied_version", "Version of the route table HAProxy runs."
        )
        applied.add_metric([], version)
        return [responses, grpc_errors, errors, weight, applied]


def _add(a: SlotCounters, b: SlotCounters) -> SlotCounters:
    keys = set(a.responses) | set(b.responses)
    return replace(
        a,
        responses={k: a.responses.get(k, 0) + b.responses.get(k, 0) for k in keys},
        connection_errors=a.connection_errors + b.connection_errors,
        response_errors=a.response_errors + b.response_errors,
        grpc_errors=a.grpc_errors + b.grpc_errors,
    )
