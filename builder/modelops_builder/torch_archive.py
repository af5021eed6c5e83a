"""Check a torch archive's contents before torch reads it; pure (zipfile, json, ast, pickletools).

An ExportedProgram (.pt2) is read here and never through `torch.export.load`, which unpickles
members in three places (weights or constants whose config says `use_pickle`, the always-
pickled sample inputs, opaque-object constants), evaluates symbolic-shape strings with
`sympy.sympify` (Python `eval`), and compiles the archive's `guards_code` into Python. So:

- weights and constants must be raw tensor bytes described by their JSON config: any pickled
  payload, legacy `.pt` weights, or custom/opaque object constant is refused;
- the sample inputs are never read (the builder makes its own example inputs);
- every symbolic expression must parse as a small arithmetic expression over Symbol/Integer
  and torch's shape functions, with no names, attributes or strings beyond those;
- every graph node must call an operator of the allow-list (export_ops.py: the `aten` and
  `prims` overloads torch.export can trace, none that names a file), a higher-order operator,
  or plain arithmetic on sizes;
- `guards_code` is dropped: the builder enforces its own shape ranges.

A TorchScript archive is loaded by TorchScript's own C++ unpickler, which resolves a fixed set
of globals and never imports Python modules; its pickles are still scanned here (opcodes only,
never executed) and any global outside that set is refused, so a pickle made for Python's
unpickler fails with a clear error before torch reads it.
"""

from __future__ import annotations

import ast
import json
import pickletools
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import BuildError
from .export_ops import allowed_target

PT2_HINT = "save the model with torch.export.save (format exported-program)"
TORCHSCRIPT_HINT = (
    "save the model with torch.jit.save, or better as an ExportedProgram (torch.export.save)"
)
_PAYLOAD_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_SYMBOL_NAME = re.compile(r"^[a-z]+[0-9]+$")
# sympy classes srepr writes, and torch.utils._sympy.functions the deserializer knows.
_SYMPY_CALLS = frozenset((
    "Symbol", "Integer", "Rational", "Float", "Mul", "Add", "Pow", "Mod", "Max", "Min", "Abs",
    "floor", "ceiling", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "StrictLessThan", "StrictGreaterThan",
    "LessThan", "GreaterThan", "Equality", "Unequality", "And", "Or", "Not", "Piecewise",
    "ExprCondPair", "Tuple", "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv",
    "CeilToInt", "FloorToInt", "CeilDiv", "LShift", "RShift", "PowByNatural", "FloatPow",
    "FloatTrueDiv", "IntTrueDiv", "IsNonOverlappingAndDenseIndicator", "TruncToFloat",
    "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat", "Identity",
))  # fmt: skip
_SYMPY_NAMES = frozenset(("oo", "zoo", "nan", "true", "false", "True", "False", "pi", "E", "I"))
_SYMPY_KEYWORDS = frozenset((
    "positive", "integer", "real", "nonnegative", "negative", "nonpositive", "finite", "zero",
    "even", "odd",
))  # fmt: skip
# Expression structure a shape formula may use (calls, names and constants are checked apart).
_STRUCTURE = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.keyword, ast.Load,
    ast.cmpop, ast.boolop, ast.Not, ast.UAdd, ast.USub, ast.Add, ast.Sub, ast.Mult, ast.Div,
    ast.FloorDiv, ast.Mod, ast.Pow,
)  # fmt: skip
# Node targets outside torch.ops: the plain arithmetic on sizes that torch.export emits.
_OPERATOR_TARGETS = frozenset(
    [f"_operator.{name}" for name in (
        "add", "sub", "mul", "floordiv", "truediv", "mod", "pow", "neg", "pos", "eq", "ne", "lt",
        "le", "gt", "ge", "getitem", "and_", "or_", "not_", "abs",
    )] + [f"math.{name}" for name in ("ceil", "floor", "sqrt", "trunc")]
)  # fmt: skip
# torch functions on symbolic sizes that torch.export emits beside operators.
_TORCH_SIZE_FUNCTIONS = re.compile(r"^torch\.(sym_[a-z]+|_check[a-z_]*|_assert[a-z_]*)$")
# Globals TorchScript's C++ unpickler resolves (torch/csrc/jit/serialization/unpickler.cpp).
_TORCHSCRIPT_GLOBALS = re.compile(
    r"^(__torch__(\.[A-Za-z0-9_.]+)? [A-Za-z0-9_]+|collections OrderedDict|builtins set|"
    r"torch [A-Za-z0-9]*Storage|torch device|torch\._utils _rebuild_[A-Za-z0-9_]+|"
    r"torch\.jit\._pickle [A-Za-z0-9_]+|torch\.distributed\.rpc [A-Za-z_]+)$"
)


def _invalid(message: str, hint: str) -> BuildError:
    return BuildError("InvalidModel", f"{message}; {hint}")


def _zip(path: Path, fmt: str, hint: str) -> zipfile.ZipFile:
    if not zipfile.is_zipfile(path):
        raise _invalid(
            f"not a {fmt} archive (not a zip file): pickled modules (torch.save) are refused", hint
        )
    archive = zipfile.ZipFile(path)
    for name in archive.namelist():
        parts = PurePosixPath(name).parts
        if name.startswith("/") or ".." in parts or "\\" in name:
            raise _invalid(f"{fmt} archive member {name!r} has an unsafe path", hint)
    return archive


def _root(archive: zipfile.ZipFile, marker: str, fmt: str, hint: str) -> str:
    """The folder every member lives in (torch writes `<name>/...`), found by its marker file."""
    found = [n for n in archive.namelist() if n.endswith(marker) and n.count("/") <= 1]
    if len(found) != 1:
        raise _invalid(
            f"not a {fmt} archive (no {marker}): pickled modules (torch.save) are refused", hint
        )
    return found[0].removesuffix(marker)


@dataclass(frozen=True)
class Payload:
    """One raw tensor of a .pt2 archive: the zip member holding its bytes and its metadata."""

    fqn: str
    member: str
    meta: dict[str, Any]
    is_param: bool


@dataclass(frozen=True)
class CheckedProgram:
    """A .pt2 archive's parts, every one checked: nothing in it is a pickle or code."""

    archive: Path
    program: dict[str, Any]
    weights: list[Payload]
    constants: list[Payload]


def _payloads(archive: zipfile.ZipFile, root: str, kind: str, model: str) -> list[Payload]:
    folder = f"{root}data/{kind}/"
    legacy = f"{folder}{model}.pt"
    if legacy in archive.namelist():
        raise _invalid(f"the archive keeps its {kind} as a pickle ({legacy})", PT2_HINT)
    config_name = f"{folder}{model}_{kind}_config.json"
    try:
        config = json.loads(archive.read(config_name))["config"]
    except (KeyError, ValueError) as exc:
        raise _invalid(
            f"the archive's {kind} config {config_name} is missing or invalid", PT2_HINT
        ) from exc
    payloads = []
    for fqn, meta in config.items():
        path_name = str(meta.get("path_name", ""))
        if meta.get("use_pickle") or not _PAYLOAD_NAME.match(path_name):
            raise _invalid(
                f"{kind} '{fqn}' is stored as a pickle ({path_name}): pickles are never loaded",
                PT2_HINT,
            )
        if kind == "constants" and not path_name.startswith("tensor_"):
            raise _invalid(f"constant '{fqn}' is an object ({path_name}), not a tensor", PT2_HINT)
        if meta.get("tensor_meta") is None or f"{folder}{path_name}" not in archive.namelist():
            raise _invalid(f"{kind} '{fqn}' has no tensor data in the archive", PT2_HINT)
        member = f"{folder}{path_name}"
        payloads.append(Payload(fqn, member, meta["tensor_meta"], bool(meta.get("is_param"))))
    return payloads


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def check_sym_expr(text: str) -> None:
    """Refuse a symbolic-shape string that is more than arithmetic over sympy/torch shape
    functions: torch hands these strings to sympy.sympify, which evaluates them as Python."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise _invalid(f"symbolic shape {text[:80]!r} is not an expression", PT2_HINT) from exc
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            ok = isinstance(node.func, ast.Name) and node.func.id in _SYMPY_CALLS
            ok = ok and all(k.arg in _SYMPY_KEYWORDS for k in node.keywords)
        elif isinstance(node, ast.Name):
            ok = (
                node.id in _SYMPY_CALLS
                or node.id in _SYMPY_NAMES
                or bool(_SYMBOL_NAME.match(node.id))
            )
        elif isinstance(node, ast.Constant):
            ok = isinstance(node.value, int | float | bool) or (
                isinstance(node.value, str) and bool(_SYMBOL_NAME.match(node.value))
            )
        else:
            ok = isinstance(node, _STRUCTURE)
        if not ok:
            raise _invalid(
                f"symbolic shape {text[:80]!r} is not plain shape arithmetic "
                f"({type(node).__name__}): it would be evaluated as Python",
                PT2_HINT,
            )


def check_target(target: str) -> None:
    """Refuse a graph node that calls anything but an allowed operator."""
    if target in _OPERATOR_TARGETS or _TORCH_SIZE_FUNCTIONS.match(target):
        return
    if allowed_target(target):
        return
    raise _invalid(
        f"graph node calls {target[:120]!r}, which is not among the operators a model may use "
        "(the aten and prims operators torch.export traces; none that reads or writes files)",
        PT2_HINT,
    )


def check_exported_program(path: Path) -> CheckedProgram:
    """Read a .pt2 archive's program JSON and tensor configs, refusing pickles and code."""
    with _zip(path, "exported-program", PT2_HINT) as archive:
        root = _root(archive, "archive_format", "exported-program", PT2_HINT)
        if archive.read(f"{root}archive_format").strip() != b"pt2":
            raise _invalid("archive_format is not pt2", PT2_HINT)
        models = [
            n for n in archive.namelist() if n.startswith(f"{root}models/") and n.endswith(".json")
        ]
        if len(models) != 1:
            raise _invalid(f"the archive holds {len(models)} programs, want exactly one", PT2_HINT)
        model = PurePosixPath(models[0]).stem
        try:
            program = json.loads(archive.read(models[0]))
        except ValueError as exc:
            raise _invalid(f"{models[0]} is not JSON", PT2_HINT) from exc
        if not isinstance(program, dict):
            raise _invalid(f"{models[0]} is not a program", PT2_HINT)
        weights = _payloads(archive, root, "weights", model)
        constants = _payloads(archive, root, "constants", model)
    for key, value in _walk(program):
        if key == "expr_str" and isinstance(value, str):
            check_sym_expr(value)
        elif key == "target" and isinstance(value, str):
            check_target(value)
    # Guards are Python source that ExportedProgram.module() compiles: never kept.
    program["guards_code"] = []
    return CheckedProgram(path, program, weights, constants)


def check_torchscript(path: Path) -> None:
    """Scan every pickle of a TorchScript archive (opcodes only) for globals outside the set
    TorchScript's own unpickler resolves."""
    with _zip(path, "torchscript", TORCHSCRIPT_HINT) as archive:
        _root(archive, "constants.pkl", "torchscript", TORCHSCRIPT_HINT)
        for name in archive.namelist():
            if name.endswith((".pkl", ".debug_pkl")):
                _scan_pickle(name, archive.read(name))


def _scan_pickle(name: str, data: bytes) -> None:
    strings: list[str] = []
    try:
        for opcode, arg, _ in pickletools.genops(data):
            found = None
            if opcode.name == "GLOBAL":
                found = str(arg)
            elif opcode.name == "STACK_GLOBAL":
                found = " ".join(strings[-2:])
            elif opcode.name in ("INST", "OBJ", "EXT1", "EXT2", "EXT4"):
                found = f"<{opcode.name}>"
            if found is not None and not _TORCHSCRIPT_GLOBALS.match(found):
                raise _invalid(
                    f"TorchScript member {name} references the Python global {found!r}: a "
                    "TorchScript archive holds only TorchScript types and tensors",
                    TORCHSCRIPT_HINT,
                )
            if isinstance(arg, str):
                strings.append(arg)
    except ValueError as exc:  # pickletools' own error for a malformed stream
        raise _invalid(
            f"TorchScript member {name} is not a valid pickle: {exc}", TORCHSCRIPT_HINT
        ) from exc
