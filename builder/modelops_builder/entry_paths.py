"""File names inside a store entry: a leaf module the local and the s3 store both import."""

from __future__ import annotations

from pathlib import PurePosixPath

from .errors import BuildError


def safe_entry_path(name: str) -> PurePosixPath:
    """`name` as a relative path inside an entry; BuildError for anything that could leave it."""
    rel = PurePosixPath(name)
    if rel.is_absolute() or not rel.parts or any(p in ("", ".", "..") for p in rel.parts):
        raise BuildError("InvalidRequest", f"unsafe file name {name!r} in a store entry")
    return rel
