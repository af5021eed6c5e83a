"""What the router says about requests, per ModelDeployment, for scale to zero (decide/idle.py).

Two sources: the router pods' counts (read by telemetry every few seconds: a count that moved is
a request; a router pod that could not be read counts as one, so unknown is never idle), and the
router's pushed reports of held requests (handlers/demand_feed.py: a held request wakes the
model at once, a served one carries the cold start, a timed-out one becomes an Event).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ..api.routes import DemandEvent, DemandReport
from ..decide.idle import Activity
from .router_watch import RouterReading

MAX_REPORTS = 100  # served hold times kept between two reconciles


@dataclass
class ActivityLog:
    """One ModelDeployment's activity: kept between reconciles, reports taken once."""

    last_request: datetime | None = None
    router_counts: float | None = None
    held_since: datetime | None = None
    served: list[float] = field(default_factory=list)
    timed_out: int = 0

    def count(self, reading: RouterReading) -> None:
        """A reading of the router pods: a request went through when their counts moved."""
        counts = sum(
            c.requests for sample in reading.samples.values() for c in sample.counts.values()
        )
        unknown = len(reading.samples) < max(1, reading.report.ready_pods)
        if unknown or self.router_counts is None or counts != self.router_counts:
            self.last_request = datetime.now(UTC)
        self.router_counts = None if unknown else counts

    def note(self, report: DemandReport) -> None:
        """A report the router pushed."""
        now = datetime.now(UTC)
        self.last_request = now
        if report.event == DemandEvent.HELD:
            since = now - timedelta(seconds=report.seconds)
            self.held_since = min(since, self.held_since or since)
        elif report.event == DemandEvent.SERVED:
            self.served = [*self.served[-(MAX_REPORTS - 1) :], report.seconds]
        else:
            self.timed_out += report.count

    def take(self) -> Activity:
        """What the next reconcile decides from; the reports are handed out once."""
        activity = Activity(self.last_request, self.held_since, tuple(self.served), self.timed_out)
        self.held_since, self.served, self.timed_out = None, [], 0
        return activity
