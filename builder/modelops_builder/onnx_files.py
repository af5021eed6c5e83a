"""ONNX graphs on disk: external-data references checked before anything reads them, and a
model rewritten as one graph file plus at most one data file, streaming.

A graph over 2 GiB keeps its weights in external-data files named by each tensor's
`external_data` (location, offset, length). Those names come from the user: every one must stay
inside the model's folder, be a regular file, and hold the bytes it claims, or nothing reads it.
Copies go tensor by tensor in chunks, so a model is never held in memory, and land under names
the builder chooses (`model.onnx` + `model.onnx.data`): a user's file name can never overwrite
another file of the entry (such as the python backend's model.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

import onnx
from onnx import TensorProto

from .errors import BuildError

CHUNK = 8 << 20
# Large tensors start on a page boundary in the data file, so runtimes can map them directly.
ALIGN, ALIGN_FROM = 4096, 1 << 20
DATA_SUFFIX = ".data"


def load_graph(path: Path) -> onnx.ModelProto:
    """The graph without its external data (weights stay on disk)."""
    return onnx.load(str(path), load_external_data=False)


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[TensorProto]:
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _graph_tensors(attribute.g)
            for sub in attribute.graphs:
                yield from _graph_tensors(sub)


def external_tensors(model: onnx.ModelProto) -> list[TensorProto]:
    """Every tensor (initializers, attributes, subgraphs) whose bytes live in another file."""
    return [t for t in _graph_tensors(model.graph) if t.data_location == TensorProto.EXTERNAL]


def external_info(tensor: TensorProto) -> dict[str, str]:
    """A tensor's external_data entries (location, offset, length, ...)."""
    return {entry.key: entry.value for entry in tensor.external_data}


def _bad(tensor: TensorProto, location: str, why: str) -> BuildError:
    return BuildError(
        "InvalidModel",
        f"tensor '{tensor.name}': its external data {location!r} {why}; a graph with external "
        "data comes as a .tar or .tar.gz holding the .onnx and its data files beside it",
    )


def data_span(tensor: TensorProto, folder: Path) -> tuple[Path, int, int]:
    """(file, offset, length) of an external tensor, checked to stay inside `folder`."""
    info = external_info(tensor)
    location = info.get("location", "")
    relative = PurePosixPath(location)
    if (
        not location
        or relative.is_absolute()
        or ".." in relative.parts
        or "\\" in location
        or "\0" in location
        or ":" in location
    ):
        raise _bad(tensor, location, "leaves the model's folder")
    path = folder / Path(*relative.parts)
    resolved = path.resolve()
    if not resolved.is_relative_to(folder.resolve()) or path.is_symlink():
        raise _bad(tensor, location, "leaves the model's folder")
    if not path.is_file():
        raise _bad(tensor, location, "is not a file beside the graph")
    try:
        offset = int(info.get("offset", "0"))
        size = path.stat().st_size
        length = int(info["length"]) if "length" in info else size - offset
    except ValueError as exc:
        raise _bad(tensor, location, "has a malformed offset or length") from exc
    if offset < 0 or length < 0 or offset + length > size:
        raise _bad(
            tensor, location, f"claims bytes {offset}..{offset + length} of a {size}-byte file"
        )
    return path, offset, length


def check_external_data(model: onnx.ModelProto, model_path: Path) -> list[Path]:
    """The data files a graph references, every reference checked; InvalidModel otherwise."""
    files = {data_span(t, model_path.parent)[0] for t in external_tensors(model)}
    return sorted(files)


class DataWriter:
    """Appends tensors' bytes to one external-data file and points the tensors at them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle: IO[bytes] = path.open("wb")
        self.used = False

    def _place(self, tensor: TensorProto, length: int) -> int:
        offset = self.handle.tell()
        if length >= ALIGN_FROM and offset % ALIGN:
            self.handle.write(b"\0" * (ALIGN - offset % ALIGN))
            offset = self.handle.tell()
        tensor.ClearField("raw_data")
        del tensor.external_data[:]
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", self.path.name), ("offset", offset), ("length", length)):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, str(value)
        self.used = True
        return offset

    def write(self, tensor: TensorProto, data: bytes) -> None:
        """Store `data` as the tensor's bytes."""
        self._place(tensor, len(data))
        self.handle.write(data)

    def copy(self, tensor: TensorProto, source: Path, offset: int, length: int) -> None:
        """Store `length` bytes of `source` from `offset` as the tensor's bytes, in chunks."""
        self._place(tensor, length)
        with source.open("rb") as src:
            src.seek(offset)
            left = length
            while left:
                chunk = src.read(min(CHUNK, left))
                if not chunk:
                    raise BuildError("InvalidModel", f"{source.name} ends before its tensors do")
                self.handle.write(chunk)
                left -= len(chunk)

    def close(self) -> list[str]:
        """Flush; the data file's name, or nothing (and no file) when no tensor used it."""
        self.handle.close()
        if not self.used:
            self.path.unlink(missing_ok=True)
            return []
        return [self.path.name]


def save_graph(model: onnx.ModelProto, dest: Path, writer: DataWriter) -> list[str]:
    """Write the graph (external tensors already placed by `writer`); the files written."""
    data = writer.close()
    dest.write_bytes(model.SerializeToString())
    return [dest.name, *data]


def copy_model(source: Path, dest: Path) -> list[str]:
    """`source` (+ its data files) as `dest` (+ `dest.data`); the names written, graph first."""
    model = load_graph(source)
    writer = DataWriter(dest.with_name(dest.name + DATA_SUFFIX))
    try:
        for tensor in external_tensors(model):
            path, offset, length = data_span(tensor, source.parent)
            writer.copy(tensor, path, offset, length)
    except BaseException:
        writer.close()
        raise
    return save_graph(model, dest, writer)


def model_bytes(path: Path) -> int:
    """The graph's size on disk plus every data file it references."""
    model = load_graph(path)
    return os.path.getsize(path) + sum(f.stat().st_size for f in check_external_data(model, path))


def tensor_bytes(tensor: TensorProto, folder: Path) -> Any:
    """A tensor's values as numpy, read from its external data when it has some."""
    import numpy as np
    from onnx import helper, numpy_helper

    if tensor.data_location != TensorProto.EXTERNAL:
        return numpy_helper.to_array(tensor)
    path, offset, length = data_span(tensor, folder)
    dtype = helper.tensor_dtype_to_np_dtype(tensor.data_type)
    with path.open("rb") as handle:
        handle.seek(offset)
        raw = handle.read(length)
    return np.frombuffer(raw, dtype=dtype).reshape(tuple(tensor.dims))
