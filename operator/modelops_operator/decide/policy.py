"""PURE: what the platform admin allows each namespace, checked before anything is built.

TorchScript runs the model's own code while it is built (TorchScript's interpreter executes the
module's methods and `__setstate__`, which can read and write files), in the release namespace
next to the store. So a TorchScript source builds only in the namespaces the chart's
`build.allowTorchScript` lists; an ExportedProgram (checked before torch reads it, operators
from an allow-list) or ONNX builds everywhere.
"""

from __future__ import annotations

from modelops_contract.enums import ModelFormat

from ..api import ModelDeployment
from ..settings import Settings

ALL_NAMESPACES = "*"


def torchscript_allowed(namespace: str, settings: Settings) -> bool:
    """Whether ModelDeployments of `namespace` may build TorchScript sources."""
    allowed = settings.torchscript_namespaces
    return ALL_NAMESPACES in allowed or namespace in allowed


def policy_refusal(md: ModelDeployment, settings: Settings) -> str | None:
    """Why this namespace may not build this spec (the field and the fix), or None."""
    namespace = md.metadata.namespace or "default"
    if md.spec.model.format == ModelFormat.TORCHSCRIPT and not torchscript_allowed(
        namespace, settings
    ):
        return (
            f"spec.model.format: torchscript runs the model's own code during its build, and "
            f"namespace {namespace!r} is not allowed to (the chart's build.allowTorchScript "
            "lists the namespaces that are): save the model with torch.export.save and use "
            "format exported-program, or ask the platform admin to allow this namespace"
        )
    return None
