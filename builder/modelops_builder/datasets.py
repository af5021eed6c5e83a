"""The int8 build's data: the calibration set, the labelled set, and the points the task gate
judges, as arrays per input (batch first).

A set is an `.npz` read with pickles refused (validate.load_set), fetched like the model (the
sha256 checked before numpy reads a byte; in a cluster the engine server's staged copy), at most
2 GiB like spec.validation's. Its arrays must fit the graph: one per input name, one length, the
graph's fixed dims, and (TensorRT) the profile's range on the dynamic ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelops_contract.quantization import MAX_DATASET_BYTES, DataSetSource
from modelops_contract.request import TensorSig
from modelops_contract.validation import LABELS

from .errors import BuildError
from .example_inputs import NUMPY_DTYPES, example_inputs
from .fetch import fetch
from .validate import load_set

Arrays = dict[str, Any]
# Calibration reads at most this many samples (ranges settle after a few hundred).
MAX_CALIBRATION_SAMPLES = 512
# The builder's own inputs when no set is given: how many, and seeds apart from the gate's.
BUILDER_SAMPLES = 128
CALIBRATION_SEED, EVALUATION_SEED = 7_000_001, 7_000_002
RANDOM_WARNING = (
    "calibrated on the builder's random inputs: random inputs calibrate poorly (activation "
    "ranges unlike real data's); give spec.build.calibration.source, a few hundred real samples"
)


@dataclass(frozen=True)
class DataSet:
    """Input arrays (batch first), labels when the set has them, and where it came from."""

    feeds: Arrays
    labels: Any | None
    origin: str  # "sha256:<hex>" of the file, or "builder"

    @property
    def samples(self) -> int:
        """Number of samples (every input array has this length)."""
        return len(next(iter(self.feeds.values())))

    def batches(self, size: int) -> list[Arrays]:
        """The feeds cut into batches of at most `size`."""
        return [
            {name: value[start : start + size] for name, value in self.feeds.items()}
            for start in range(0, self.samples, size)
        ]

    def head(self, samples: int) -> DataSet:
        """The first `samples` samples."""
        feeds = {name: value[:samples] for name, value in self.feeds.items()}
        labels = None if self.labels is None else self.labels[:samples]
        return DataSet(feeds, labels, self.origin)


def _check_dims(field: str, sig: TensorSig, array: Any, ranges: dict[str, Any]) -> None:
    dims = list(array.shape[1:])
    want = sig.dims
    low, high = ranges.get(sig.name, (None, None))
    bad = len(dims) != len(want) or any(
        (w > 0 and d != w) or (w <= 0 and low is not None and not low[i] <= d <= high[i])
        for i, (d, w) in enumerate(zip(dims, want, strict=False))
    )
    if bad:
        allowed = f"{want}" if low is None else f"{want} (dynamic dims within {low}..{high})"
        raise BuildError(
            "InvalidDataSet",
            f"{field}: array '{sig.name}' has dims {dims} per sample, the model takes {allowed}: "
            "batch first, then the input's dims",
        )


def read_set(
    field: str,
    source: DataSetSource,
    inputs: list[TensorSig],
    work: Path,
    *,
    local_source: bool,
    ranges: dict[str, Any],
    labelled: bool = False,
) -> DataSet:
    """Fetch and check one set: `field` (spec.build.calibration.source, spec.validation.source)
    names it in every error. `ranges`: per input (min dims, max dims) the engine accepts."""
    path = fetch(
        source.source_uri,
        source.sha256,
        work / f"{field.replace('.', '-')}.npz",
        max_bytes=MAX_DATASET_BYTES,
        local_source=local_source,
        staged=source.staged_source,
    )
    try:
        arrays = load_set(path)
    except BuildError as exc:
        raise BuildError("InvalidDataSet", f"{field}: {exc.message}") from exc
    finally:
        path.unlink(missing_ok=True)
    missing = sorted({s.name for s in inputs} - set(arrays))
    if missing:
        raise BuildError(
            "InvalidDataSet",
            f"{field}: the set lacks input arrays {missing} (it has {sorted(arrays)}); give one "
            "array per input name",
        )
    feeds: Arrays = {}
    for sig in inputs:
        array = np.asarray(arrays[sig.name])
        _check_dims(field, sig, array, ranges)
        feeds[sig.name] = array.astype(NUMPY_DTYPES[sig.data_type], copy=False)
    sizes = {len(v) for v in feeds.values()}
    if len(sizes) != 1 or 0 in sizes:
        raise BuildError("InvalidDataSet", f"{field}: input arrays are empty or differ in length")
    labels = arrays.get(LABELS)
    if labelled and (labels is None or labels.shape != (sizes.pop(),)):
        raise BuildError(
            "InvalidDataSet",
            f"{field}: a labelled set needs a '{LABELS}' array of one integer class per sample",
        )
    return DataSet(
        feeds, None if labels is None else labels.astype(np.int64), f"sha256:{source.sha256}"
    )


def builder_set(inputs: list[TensorSig], dims: dict[str, Any], seed: int) -> DataSet:
    """The builder's own seeded inputs at the opt shape (what calibrates without a set)."""
    feeds = example_inputs(inputs, BUILDER_SAMPLES, seed=seed, dims=dims)
    return DataSet(feeds, None, "builder")
