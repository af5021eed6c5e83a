"""Load torch archives after torch_archive checked them, in ways that cannot unpickle.

An ExportedProgram is rebuilt from its checked parts with torch's own deserializer: the program
JSON (symbolic shapes and node targets already vetted, guards dropped), and weights and
constants made from their raw bytes (`torch.frombuffer`, then the recorded strides). The sample
inputs, the only member that is always a pickle, are never read. TorchScript goes through
`torch.jit.load` (TorchScript's C++ unpickler, whose globals torch_archive already checked).
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path
from typing import Any

from .errors import BuildError
from .torch_archive import PT2_HINT, CheckedProgram, Payload, check_torchscript


def _tensor(archive: zipfile.ZipFile, payload: Payload) -> Any:
    import torch
    from torch._export.serde.schema import TensorMeta
    from torch._export.serde.serialize import _dict_to_dataclass as to_dataclass
    from torch._export.serde.serialize import (
        deserialize_scalar_type,
        deserialize_size,
        deserialize_storage_offset,
        deserialize_stride,
    )

    meta = to_dataclass(TensorMeta, payload.meta)  # type: ignore[no-untyped-call]
    dtype = deserialize_scalar_type(meta.dtype)
    size = deserialize_size(meta.sizes)
    # bytearray: a writable buffer the tensor owns, so no copy of the archive stays behind.
    data = bytearray(archive.read(payload.member))
    if not data:  # torch writes no bytes for a tensor without elements
        return torch.zeros(size, dtype=dtype)
    flat = torch.frombuffer(data, dtype=dtype)
    # as_strided checks the view stays inside the bytes read: a lying config fails here.
    tensor = torch.as_strided(
        flat,
        size,
        deserialize_stride(meta.strides),
        deserialize_storage_offset(meta.storage_offset),
    )
    if payload.is_param:
        return torch.nn.Parameter(tensor, requires_grad=bool(meta.requires_grad))
    return tensor


def load_program(checked: CheckedProgram) -> Any:
    """The ExportedProgram of a checked .pt2 archive (torch's deserializer, no pickles)."""
    from torch._export.serde.schema import ExportedProgram as SerializedProgram
    from torch._export.serde.serialize import ExportedProgramDeserializer
    from torch._export.serde.serialize import _dict_to_dataclass as to_dataclass

    try:
        with zipfile.ZipFile(checked.archive) as archive:
            state_dict = {p.fqn: _tensor(archive, p) for p in checked.weights}
            constants = {p.fqn: _tensor(archive, p) for p in checked.constants}
        serialized = to_dataclass(SerializedProgram, checked.program)  # type: ignore[no-untyped-call]
        return ExportedProgramDeserializer().deserialize(serialized, state_dict, constants, None)
    except BuildError:
        raise
    except Exception as exc:  # torch's deserializer raises many types
        raise BuildError(
            "InvalidModel",
            f"cannot load the exported-program: {str(exc).strip().splitlines()[0][:300]}; "
            f"{PT2_HINT} with torch 2.13",
        ) from exc


def load_torchscript(path: Path) -> Any:
    """A TorchScript module, after its pickles were checked (InvalidModel otherwise)."""
    import torch

    check_torchscript(path)
    try:
        with warnings.catch_warnings():
            # torch.jit is deprecated in torch 2.13 but TorchScript sources stay supported; the
            # warning would only repeat that on every build.
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    except Exception as exc:  # torch raises RuntimeError and others for a broken archive
        text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise BuildError("InvalidModel", f"cannot load torchscript: {text}") from exc
