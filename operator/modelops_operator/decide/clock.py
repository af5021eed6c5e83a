"""Times as Kubernetes writes them: RFC 3339 in, RFC 3339 out (seconds, Z)."""

from __future__ import annotations

from datetime import datetime


def parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 time, or None when absent or unreadable."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def rfc3339(moment: datetime) -> str:
    """A timestamp as Kubernetes writes them (seconds, Z)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
