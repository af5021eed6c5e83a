"""The checks that stand between a torch archive and torch's loaders: shape formulas that sympy
would evaluate, graph nodes that would call Python, pickles TorchScript would not resolve."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from modelops_builder.errors import BuildError
from modelops_builder.export_ops import allowed_ops
from modelops_builder.torch_archive import check_sym_expr, check_target, check_torchscript

GENERATE = "from modelops_builder.export_ops import generate; print('\\n'.join(generate()))"

# What torch.export writes (sympy srepr of shape formulas).
GOOD_EXPRESSIONS = [
    "Symbol('s43', positive=True, integer=True)",
    "Mul(Integer(96), Symbol('s43', positive=True, integer=True))",
    "Min(Integer(32), Mul(Integer(32), Symbol('s43', positive=True, integer=True)))",
    "FloorDiv(Symbol('s0', integer=True), Integer(2))",
    "s0 + 2*s1 - 1",
    "Eq(Mod(s0, 8), 0)",
    "oo",
]
EVIL_EXPRESSIONS = [
    "__import__('os').system('id')",
    "Symbol('s0').__class__",
    "open('/etc/passwd')",
    "Symbol('__import__')",
    "exec('print(1)')",
    "Symbol('s0', positive=True, integer=True, **{'x': 1})",
    "[c for c in ().__class__.__bases__]",
    "lambda: 0",
    "Symbol(chr(95))",
]


@pytest.mark.parametrize("text", GOOD_EXPRESSIONS)
def test_shape_formulas_torch_writes_pass(text: str) -> None:
    check_sym_expr(text)


@pytest.mark.parametrize("text", EVIL_EXPRESSIONS)
def test_anything_else_in_a_shape_formula_is_refused(text: str) -> None:
    with pytest.raises(BuildError) as caught:
        check_sym_expr(text)
    assert caught.value.reason == "InvalidModel"
    assert "torch.export.save" in caught.value.message


@pytest.mark.parametrize(
    "target",
    [
        "torch.ops.aten.linear.default",
        "torch.ops.aten.scaled_dot_product_attention.default",
        "torch.ops.higher_order.cond",
        "torch.ops.aten.add.Tensor",
        "torch.ops.aten.softmax.int",
        "torch.ops.aten.layer_norm.default",
        "torch.ops.aten.conv2d.default",
        "torch.ops.prims.add.default",
        "_operator.mul",
        "_operator.getitem",
        "math.ceil",
        "torch.sym_max",
    ],
)
def test_operators_are_accepted(target: str) -> None:
    check_target(target)


@pytest.mark.parametrize(
    "target",
    [
        "builtins.exec",
        "os.system",
        "torch.hub.load",
        "torch.load",
        "torch.utils.cpp_extension.load_inline",
        "torch.ops.aten.from_file.default",
        "_operator.attrgetter",
        "_operator.methodcaller",
        "math.__loader__",
    ],
)
def test_calls_that_are_not_operators_are_refused(target: str) -> None:
    with pytest.raises(BuildError, match="not among the operators"):
        check_target(target)


@pytest.mark.parametrize(
    "target",
    [
        "torch.ops.aten.save.default",  # TorchScript's file writer: passed the old deny-list
        "torch.ops.aten.from_file.out",
        "torch.ops.aten.from_file.default",
        "torch.ops.aten.no_such_op.default",
        "torch.ops.aten.linear",  # no overload
        "torch.ops.aten.linear.default.extra",
        "torch.ops.mylib.anything.default",  # a custom namespace
        "torch.ops.higher_order.run_const_graph",
        "torch.ops.prims.nope.default",
    ],
)
def test_finding_9_only_allow_listed_aten_and_prims_operators_pass(target: str) -> None:
    with pytest.raises(BuildError, match="not among the operators"):
        check_target(target)


def test_finding_9_the_allow_list_is_what_the_installed_torch_traces() -> None:
    """export_ops.txt is regenerated (and reviewed) with every torch upgrade. The generator runs
    in its own interpreter, as `python -m modelops_builder.export_ops` does: torch registers
    more operators as more of it is imported (earlier tests import inductor)."""
    generated = subprocess.run(
        [sys.executable, "-c", GENERATE], capture_output=True, text=True, check=True
    ).stdout.split()
    assert sorted(allowed_ops()) == generated, "run python -m modelops_builder.export_ops"
    assert len(allowed_ops()) > 1000


class _Boom:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("true",))


def _torchscript_like(tmp_path: Path, member: bytes) -> Path:
    path = tmp_path / "m.pt"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("m/constants.pkl", pickle.dumps((), protocol=2))
        archive.writestr("m/data.pkl", member)
    path.write_bytes(buffer.getvalue())
    return path


@pytest.mark.parametrize("protocol", [2, 4])
def test_a_python_global_in_a_torchscript_pickle_is_refused(tmp_path: Path, protocol: int) -> None:
    # Protocol 2 names the global with GLOBAL, 4 with STACK_GLOBAL: both are caught.
    path = _torchscript_like(tmp_path, pickle.dumps(_Boom(), protocol=protocol))
    with pytest.raises(BuildError, match=r"references the Python global '(posix|os) system'"):
        check_torchscript(path)


@pytest.mark.parametrize(
    "global_name", [b"__torch__\nResNet18", b"__torch__.torch.nn.modules.linear\nLinear"]
)
def test_torchscript_class_globals_pass(tmp_path: Path, global_name: bytes) -> None:
    # A module defined in a script is `__torch__ Name`, one from a package `__torch__.pkg Name`.
    check_torchscript(_torchscript_like(tmp_path, b"\x80\x02c" + global_name + b"\n."))


def test_torchscript_globals_of_the_real_saver_pass(tmp_path: Path) -> None:
    # A module defined in a script is `__torch__ Name` (no package), one from a package
    # `__torch__.pkg.module Name`; tensors come through torch._utils and storages.
    import torch
    from torch import nn

    from tests.support.builder_cases import save_torchscript

    class Scripted(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x)

    path = tmp_path / "ok.pt"
    save_torchscript(Scripted().eval(), (torch.zeros(1, 4),), path)
    check_torchscript(path)


@pytest.mark.parametrize("name", ["/abs/constants.pkl", "../constants.pkl", "m\\..\\x"])
def test_unsafe_member_names_are_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / "m.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(name, b"")
    with pytest.raises(BuildError, match="unsafe path"):
        check_torchscript(path)
