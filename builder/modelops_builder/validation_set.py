"""The entry's validation set: seeded inputs and the fp32 reference's outputs, for the rollout.

Written beside engine.json at build time. Before a new revision gets any client request, the
operator's validation Job sends these inputs to every candidate pod and compares the answers
with the reference within the build's tolerances: an engine that passed its gate but is served
wrongly (a config.pbtxt that does not match it, a broken image) is caught there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelops_contract.request import TensorSig
from modelops_contract.validation import INPUT_PREFIX, OUTPUT_PREFIX

from .engines import OrtRunner
from .export import example_inputs

SEED = 20251101
MAX_SAMPLES = 8


def write_validation_set(
    path: Path, reference_onnx: Path, inputs: list[TensorSig], max_batch: int
) -> int:
    """Write `path` (.npz); returns the number of samples."""
    samples = max(1, min(max_batch, MAX_SAMPLES))
    feeds = example_inputs(inputs, samples, seed=SEED)
    reference = OrtRunner(reference_onnx, reference=True)
    outputs = reference.run(reference.cast(feeds))
    arrays = {f"{INPUT_PREFIX}{name}": value for name, value in feeds.items()}
    arrays |= {
        f"{OUTPUT_PREFIX}{name}": np.asarray(value)
        for name, value in zip(reference.output_names, outputs, strict=True)
    }
    with path.open("wb") as handle:
        np.savez(handle, **arrays)
    return samples
