"""TensorRT's own messages: forwarded to Python logging and kept for the user-facing error.

TensorRT reports why a parse, a profile, a timing cache or a build failed only through its
ILogger; the API call itself returns False, -1 or None. The builder therefore logs through an
ILogger subclass that keeps the last error lines, and each failure's BuildError carries the
lines logged since that step began (bounded: the summary must fit a termination message).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

log = logging.getLogger("modelops_builder.tensorrt")

# ILogger::Severity (NvInferRuntimeBase.h): lower is more severe.
INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = 0, 1, 2, 3, 4
KEPT_ERRORS = 20
LINE_LIMIT = 300
MESSAGE_LIMIT = 1500


class TensorRTMessages:
    """The error lines TensorRT logged, numbered so a step can ask for those since it began."""

    def __init__(self, keep: int = KEPT_ERRORS) -> None:
        self._errors: deque[tuple[int, str]] = deque(maxlen=keep)
        self._count = 0

    def record(self, severity: int, message: str) -> None:
        """Forward one TensorRT message to logging; keep it when it is an error."""
        text = " ".join(str(message).split())
        if severity <= ERROR:
            self._count += 1
            self._errors.append((self._count, text[:LINE_LIMIT]))
            log.error("%s", text)
        elif severity == WARNING:
            log.warning("%s", text)
        elif severity == INFO:
            log.debug("%s", text)

    def mark(self) -> int:
        """A position to pass to `describe` later: errors after it belong to the next step."""
        return self._count

    def describe(self, since: int = 0, limit: int = MESSAGE_LIMIT) -> str:
        """Error lines recorded after `since`, joined and bounded; a hint when there are none."""
        lines = [text for number, text in self._errors if number > since]
        if not lines:
            return "TensorRT logged no error"
        joined = "; ".join(lines)
        return joined if len(joined) <= limit else joined[: limit - 3] + "..."


def make_logger(trt: Any, messages: TensorRTMessages) -> Any:
    """A trt.ILogger that hands every message to `messages` (defined here: tensorrt is lazy)."""

    class ForwardingLogger(trt.ILogger):  # type: ignore[misc]
        def __init__(self) -> None:
            # pybind11 trampolines need the base __init__, or TensorRT cannot call log().
            trt.ILogger.__init__(self)

        def log(self, severity: Any, msg: str) -> None:
            if int(severity) < VERBOSE:  # verbose lines are thousands per build: drop them here
                messages.record(int(severity), msg)

    return ForwardingLogger()
