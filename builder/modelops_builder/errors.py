"""BuildError: every expected build failure, with a CamelCase reason and who has to act.

Light module (no torch, onnx or tensorrt), shared by every stage and by the CLI's exit codes.
"""

from __future__ import annotations

from typing import Literal

ErrorKind = Literal["input", "infrastructure"]


class BuildError(Exception):
    """A build failure: `reason` is CamelCase for status conditions, `kind` picks the exit code.

    kind "input": the request or the model is wrong; retrying the same request fails again.
    kind "infrastructure": the node, network, store or image is at fault; a retry may succeed.
    """

    def __init__(self, reason: str, message: str, kind: ErrorKind = "input") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.kind: ErrorKind = kind

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"
