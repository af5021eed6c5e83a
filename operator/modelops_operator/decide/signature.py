"""PURE: can a candidate take the serving revision's clients? Its I/O signature decides.

Compatible means every request the serving revision accepts, the candidate accepts too, and it
answers with what clients already read: the same input and output names and data types, input
dims equal or dynamic where they were fixed, output dims equal (or the serving one dynamic), and
a max batch at least as large. Anything else would fail clients' requests, so it gets no canary
traffic: it waits for `spec.rollout.acceptSignature` naming its digest, then cuts over at once.
"""

from __future__ import annotations

import hashlib
import json

from modelops_contract.manifest import EngineManifest
from modelops_contract.request import TensorSig

DIGEST_CHARS = 12


def signature_digest(manifest: EngineManifest) -> str:
    """12 hex characters naming an engine's inputs, outputs and max batch."""
    material = {
        "inputs": [s.to_wire() for s in manifest.inputs],
        "outputs": [s.to_wire() for s in manifest.outputs],
        "maxBatchSize": manifest.max_batch_size,
    }
    blob = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:DIGEST_CHARS]


def _shape(sig: TensorSig) -> str:
    return f"{sig.data_type} {sig.dims}"


def _accepts(serving: list[int], candidate: list[int]) -> bool:
    """Every input shape the serving dims accept, the candidate's accept too."""
    return len(serving) == len(candidate) and all(
        c == -1 or c == s for s, c in zip(serving, candidate, strict=True)
    )


def _answers_alike(serving: list[int], candidate: list[int]) -> bool:
    """Clients that read the serving output's shape read the candidate's too."""
    return len(serving) == len(candidate) and all(
        s == -1 or c == s for s, c in zip(serving, candidate, strict=True)
    )


def differences(serving: EngineManifest, candidate: EngineManifest) -> list[str]:
    """Every change that would fail a client of the serving revision; empty when compatible."""
    found: list[str] = []
    for role, old, new, fits in (
        ("input", serving.inputs, candidate.inputs, _accepts),
        ("output", serving.outputs, candidate.outputs, _answers_alike),
    ):
        old_by_name = {s.name: s for s in old}
        new_by_name = {s.name: s for s in new}
        for name in sorted(old_by_name.keys() - new_by_name.keys()):
            found.append(f"{role} '{name}' ({_shape(old_by_name[name])}) is gone")
        for name in sorted(new_by_name.keys() - old_by_name.keys()):
            if role == "input":
                found.append(f"new input '{name}' ({_shape(new_by_name[name])}) is required")
        for name in sorted(old_by_name.keys() & new_by_name.keys()):
            before, after = old_by_name[name], new_by_name[name]
            if before.data_type != after.data_type or not fits(before.dims, after.dims):
                found.append(f"{role} '{name}': {_shape(before)} -> {_shape(after)}")
    if candidate.max_batch_size < serving.max_batch_size:
        found.append(
            f"maxBatchSize {serving.max_batch_size} -> {candidate.max_batch_size} "
            "(larger batches would be refused)"
        )
    return found
