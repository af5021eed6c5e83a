"""Keep a large model in memory once: freed weights go back to the OS at once.

glibc serves large allocations with mmap (returned to the OS on free) until a large mmapped
block is freed; it then raises its mmap threshold, and later weights of the same size come from
the heap, which glibc does not shrink. A build frees weights several times (the fp16 conversion,
the reference session, ONNX Runtime's fp16->fp32 initializer pass and weight prepacking), so
without a fixed threshold the freed copies stay resident and peak RSS grows to 2x the model.
Setting M_MMAP_THRESHOLD fixes the threshold (and turns the dynamic adjustment off).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
MMAP_THRESHOLD_BYTES = 1 << 20


def return_large_frees_to_the_os() -> bool:
    """Serve allocations of 1 MiB and more with mmap from now on (glibc); whether it applied."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        libc = None
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:  # not glibc (musl, macOS): their allocators return memory themselves
        return False
    applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    if not applied:
        log.warning("mallopt(M_MMAP_THRESHOLD) refused: peak memory may reach 2x the model")
    return applied
