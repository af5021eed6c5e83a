"""The entry's validation set: seeded inputs and the fp32 reference's outputs, for the rollout.

Written beside engine.json at build time, from a point the gate's fp32 reference already ran
(the opt shape, the largest gate batch up to MAX_SAMPLES): no second reference session, which
matters for a model of several GiB. Before a new revision gets any client request, the
operator's validation Job sends these inputs to every candidate pod and compares the answers
with the reference within the build's tolerances: an engine that passed its gate but is served
wrongly (a config.pbtxt that does not match it, a broken image) is caught there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelops_contract.request import TensorSig
from modelops_contract.validation import INPUT_PREFIX, OUTPUT_PREFIX

from .errors import BuildError
from .example_inputs import NUMPY_DTYPES
from .gate import Reference

MAX_SAMPLES = 8


def pick_point(references: list[Reference]) -> Reference:
    """The opt-shape reference with the most samples up to MAX_SAMPLES (else the smallest)."""
    at_opt = [r for r in references if r.shape == "opt"] or references
    if not at_opt:
        raise BuildError("InvalidRequest", "the gate ran no reference point")
    small = [r for r in at_opt if r.batch <= MAX_SAMPLES]
    return max(small, key=lambda r: r.batch) if small else min(at_opt, key=lambda r: r.batch)


def write_validation_set(
    path: Path,
    references: list[Reference],
    reference_inputs: list[TensorSig],
    served_inputs: list[TensorSig],
) -> int:
    """Write `path` (.npz): inputs in the served engine's data types, the fp32 reference's
    outputs. Returns the number of samples."""
    point = pick_point(references)
    feeds = point.feeds(reference_inputs)
    types = {sig.name: NUMPY_DTYPES.get(sig.data_type) for sig in served_inputs}
    arrays = {
        f"{INPUT_PREFIX}{name}": np.asarray(value, dtype=types.get(name) or None)
        for name, value in feeds.items()
    }
    arrays |= {f"{OUTPUT_PREFIX}{name}": np.asarray(value) for name, value in point.outputs.items()}
    with path.open("wb") as handle:
        np.savez(handle, **arrays)
    return point.batch
