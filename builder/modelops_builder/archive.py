"""A multi-file ONNX source: a .tar or .tar.gz holding one .onnx and its external-data files.

The sha256 covers the archive as downloaded; what is inside is extracted member by member, each
checked before a byte of it is written:

- regular files and folders only: symlinks, hard links, devices and fifos are refused;
- relative names without `..`, backslashes or NUL, each name once;
- at most MAX_MEMBERS members, and a size cap checked while copying (per member and in all:
  the archive may not expand past the download cap);
- exactly one `.onnx` file.

Files are created exclusively (O_EXCL, O_NOFOLLOW) under a fresh folder, so nothing outside it
can be written, whatever the archive says.
"""

from __future__ import annotations

import errno
import os
import tarfile
from pathlib import Path, PurePosixPath
from typing import IO

from .errors import BuildError

MAX_MEMBERS = 10_000
CHUNK = 8 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_TAR_MAGIC_OFFSET, _TAR_MAGIC = 257, b"ustar"


def is_archive(path: Path) -> bool:
    """A gzip stream or a tar file (by content, not by name: the bytes are what was hashed)."""
    with path.open("rb") as handle:
        head = handle.read(_TAR_MAGIC_OFFSET + len(_TAR_MAGIC))
    return head.startswith(_GZIP_MAGIC) or head[_TAR_MAGIC_OFFSET:] == _TAR_MAGIC


def _refuse(name: str, why: str) -> BuildError:
    return BuildError(
        "InvalidSource",
        f"archive member {name!r} {why}: a model archive holds one .onnx and its external-data "
        "files as regular files under relative paths",
    )


def _safe_name(member: tarfile.TarInfo) -> PurePosixPath:
    name = member.name
    path = PurePosixPath(name)
    if name.startswith("/") or path.is_absolute():
        raise _refuse(name, "has an absolute path")
    if ".." in path.parts:
        raise _refuse(name, "climbs out of the archive with '..'")
    if "\\" in name or "\0" in name or not path.parts:
        raise _refuse(name, "has an unusable name")
    return PurePosixPath(*[p for p in path.parts if p != "."])


def _copy(source: IO[bytes], target: Path, member: str, budget: int, cap: int) -> int:
    """Copy one member, counting bytes as they come; the bytes written."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    written = 0
    with os.fdopen(os.open(target, flags, 0o600), "wb") as out:
        for chunk in iter(lambda: source.read(CHUNK), b""):
            written += len(chunk)
            if written > budget:
                raise BuildError(
                    "SourceTooLarge",
                    f"archive member {member!r} takes the extracted size past {cap} bytes "
                    "(maxDownloadBytes): the archive expands beyond the download cap",
                )
            out.write(chunk)
    return written


def extract_model(archive: Path, dest: Path, *, max_bytes: int) -> Path:
    """Extract `archive` into the new folder `dest`; the one .onnx file in it."""
    dest.mkdir()
    seen: set[PurePosixPath] = set()
    graphs: list[PurePosixPath] = []
    total = members = 0
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            for member in tar:
                members += 1
                if members > MAX_MEMBERS:
                    raise BuildError("InvalidSource", f"archive holds over {MAX_MEMBERS} members")
                name = _safe_name(member)
                if member.issym() or member.islnk():
                    raise _refuse(member.name, f"is a link (to {member.linkname!r})")
                if not (member.isfile() or member.isdir()):
                    raise _refuse(member.name, "is not a regular file")
                if name in seen:
                    raise _refuse(member.name, "appears twice")
                seen.add(name)
                target = dest.joinpath(*name.parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                if member.size > max_bytes - total:
                    raise BuildError(
                        "SourceTooLarge",
                        f"archive member {member.name!r} is {member.size} bytes: the archive "
                        f"expands past {max_bytes} bytes (maxDownloadBytes)",
                    )
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is None:
                    raise _refuse(member.name, "cannot be read")
                total += _copy(source, target, member.name, max_bytes - total, max_bytes)
                if name.suffix == ".onnx":
                    graphs.append(name)
    except tarfile.TarError as exc:
        raise BuildError("InvalidSource", f"not a readable .tar/.tar.gz archive: {exc}") from exc
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise BuildError(
                "ScratchSpaceTooSmall", f"extracting: {exc}", "infrastructure"
            ) from exc
        raise BuildError("InvalidSource", f"cannot extract the archive: {exc}") from exc
    if len(graphs) != 1:
        found = ", ".join(str(g) for g in graphs) or "none"
        raise BuildError(
            "InvalidSource",
            f"the archive holds {len(graphs)} .onnx files ({found}): want exactly one graph "
            "plus its external-data files",
        )
    return dest.joinpath(*graphs[0].parts)
