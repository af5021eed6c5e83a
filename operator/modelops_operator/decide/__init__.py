"""PURE: (spec, observed children, metrics, now) -> plan."""
