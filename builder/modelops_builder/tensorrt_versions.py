"""Which TensorRT this image has, and whether it is the one the serving Triton runs.

A serialized plan loads only in the TensorRT version that built it (VERSION_COMPATIBLE plans load
in newer runtimes of the same major, at a speed cost we do not pay). The operator deploys one
Triton image; it passes that image's TensorRT version to the build Job as
MODELOPS_EXPECTED_TENSORRT_VERSION, and the builder refuses to build with any other version
rather than publish plans that Triton cannot load.
"""

from __future__ import annotations

import os
import re

from .errors import BuildError

EXPECTED_VERSION_ENV = "MODELOPS_EXPECTED_TENSORRT_VERSION"
# tensorrt.__version__ is MAJOR.MINOR.PATCH.BUILD (e.g. 11.4.0.106); the build number matters.
FULL_VERSION = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$")


def installed_version() -> str:
    """tensorrt.__version__ of this image (ImportError when tensorrt is absent)."""
    import tensorrt as trt

    return str(trt.__version__)


def expected_version() -> str | None:
    """The TensorRT version the serving Triton runs, as the operator passed it; None when unset."""
    return os.environ.get(EXPECTED_VERSION_ENV, "").strip() or None


def check_alignment(installed: str, expected: str | None) -> None:
    """TensorRTVersionMismatch unless the image's TensorRT is exactly the expected one.

    Infrastructure: the request is fine, the deployment pairs a builder image with a Triton image
    of another NGC release; fixing the images (one chart value pair) makes the same request work.
    """
    if expected is None or installed == expected:
        return
    raise BuildError(
        "TensorRTVersionMismatch",
        f"this builder image has TensorRT {installed} but the Triton image that serves the "
        f"engines runs TensorRT {expected} ({EXPECTED_VERSION_ENV}); a plan built here would not "
        "load there. Use builder and Triton images of one NGC release (the chart's "
        "images.builder, images.triton and tensorrt.version)",
        "infrastructure",
    )
