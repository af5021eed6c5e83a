"""Termination messages: the one line of JSON a Job's pod leaves for the operator to read.

The kubelet keeps at most 4096 bytes. Writing bounds the line by shortening `message`; reading
accepts only a line that parses into the expected model, so a forged or oversized message is
read as no message at all, never as an error that stops a reconcile.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import ValidationError

from .wire import WireModel

LIMIT_BYTES = 4000
_Model = TypeVar("_Model", bound=WireModel)


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def termination_line(model: WireModel) -> str:
    """Compact JSON of `model`, its message shortened so the line fits the kubelet's limit."""
    data = model.to_wire()
    line = _dumps(data)
    if len(line.encode()) > LIMIT_BYTES and isinstance(data.get("message"), str):
        overflow = len(line.encode()) - LIMIT_BYTES + 16
        message: str = data["message"]
        data["message"] = message[: max(0, len(message) - overflow)] + "..."
        line = _dumps(data)
    return line


def parse_termination(text: str, model: type[_Model]) -> _Model | None:
    """The last line of a termination message as `model`; None when it is anything else."""
    text = text.strip()
    if not text or len(text.encode()) > 2 * LIMIT_BYTES:
        return None
    try:
        return model.model_validate(json.loads(text.splitlines()[-1]))
    except (ValidationError, ValueError, TypeError):
        return None
