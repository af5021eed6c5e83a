"""kopf glue: read -> decide -> apply."""

from __future__ import annotations

import kopf

from . import children, modeldeployments, startup
from .runtime import LoginSource, Operator, OperatorOptions


def build(options: OperatorOptions) -> tuple[kopf.OperatorRegistry, Operator]:
    """A fresh registry with every handler bound to a fresh runtime (tests restart operators)."""
    registry = kopf.OperatorRegistry()
    op = Operator(options)
    startup.register(registry, op)
    modeldeployments.register(registry, op)
    children.register(registry, op)
    return registry, op


__all__ = [
    "LoginSource",
    "Operator",
    "OperatorOptions",
    "build",
]
