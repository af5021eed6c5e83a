"""Seeded example inputs of a model's signature (export checks, the gate, the profiler) and the
numpy types of Triton's data types: a leaf module both export.py and torch_export.py import."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelops_contract.request import TensorSig

from .errors import BuildError

# Value a dynamic non-batch dimension takes in example, gate and profile inputs when the
# request does not fix it (e.g. a sequence length).
DEFAULT_DYNAMIC_DIM = 16
# Integer inputs (token ids, indices) get values in [0, INT_HIGH): valid for any embedding table
# with at least this many rows. Integer inputs named like a mask get ones (every token attended):
# a random mask can hide a whole row, whose attention is then undefined (NaN) in any engine.
INT_HIGH = 4
MASK_WORD = "mask"

NUMPY_DTYPES: dict[str, Any] = {
    "FP32": np.float32,
    "FP16": np.float16,
    "FP64": np.float64,
    "INT64": np.int64,
    "INT32": np.int32,
    "INT16": np.int16,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "BOOL": np.bool_,
}


def example_inputs(
    inputs: list[TensorSig],
    batch: int,
    seed: int = 0,
    dims: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, Any]:
    """Seeded numpy inputs at `dims` (dynamic dims default to DEFAULT_DYNAMIC_DIM): normal
    floats, small non-negative integers, ones for integer masks."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, Any] = {}
    for sig in inputs:
        dtype = NUMPY_DTYPES.get(sig.data_type)
        if dtype is None:
            raise BuildError("InvalidModel", f"input '{sig.name}': {sig.data_type} unsupported")
        chosen = dims.get(sig.name) if dims else None
        sizes = (
            chosen
            if chosen is not None
            else [d if d > 0 else DEFAULT_DYNAMIC_DIM for d in sig.dims]
        )
        shape = (batch, *sizes)
        if np.issubdtype(dtype, np.floating):
            feeds[sig.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype != np.bool_ and MASK_WORD in sig.name.lower():
            feeds[sig.name] = np.ones(shape, dtype=dtype)
        else:
            feeds[sig.name] = rng.integers(0, INT_HIGH if dtype != np.bool_ else 2, size=shape)
            feeds[sig.name] = feeds[sig.name].astype(dtype)
    return feeds
