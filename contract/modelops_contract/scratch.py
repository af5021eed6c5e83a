"""How much scratch space (/tmp) a build needs for a given download cap.

The builder streams the source into its work dir and deletes each intermediate as soon as the
next one exists, so at most two model-sized files are on disk at once: an archive and its
extraction, an exported graph and its fp16 conversion, or a graph and the engine staged for an
s3:// store. The operator sizes the build Job's /tmp emptyDir (`sizeLimit`) and its
`ephemeral-storage` from the same function, so the Job is evicted before it can fill the node.
"""

from __future__ import annotations

GIB = 1024**3
# Python, torch's and ONNX Runtime's own temporary files, logs, the timing cache.
SCRATCH_OVERHEAD_BYTES = 1 * GIB
MODEL_COPIES = 2


def scratch_bytes(max_download_bytes: int) -> int:
    """Scratch space a build whose source is at most `max_download_bytes` may use."""
    return MODEL_COPIES * max_download_bytes + SCRATCH_OVERHEAD_BYTES


def scratch_quantity(max_download_bytes: int) -> str:
    """`scratch_bytes` as a Kubernetes quantity in whole GiB (rounded up), e.g. `41Gi`."""
    return f"{-(-scratch_bytes(max_download_bytes) // GIB)}Gi"


def output_bytes(max_download_bytes: int) -> int:
    """Room for what a cluster build hands to its publishing step: the engine (at most the size
    of the model, fp32) and the validation set, in an emptyDir of its own."""
    return max_download_bytes + SCRATCH_OVERHEAD_BYTES


def output_quantity(max_download_bytes: int) -> str:
    """`output_bytes` as a Kubernetes quantity in whole GiB (rounded up), e.g. `21Gi`."""
    return f"{-(-output_bytes(max_download_bytes) // GIB)}Gi"
