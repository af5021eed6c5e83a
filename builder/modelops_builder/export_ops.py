"""The operators an ExportedProgram's graph may call: an allow-list, kept in export_ops.txt.

A graph node's target must be one of the listed `aten`/`prims` overloads (or a higher-order op
of HIGHER_ORDER_OPS); anything else is refused before torch reads the program. The list holds
every overload that torch.export can trace, i.e. with a shape (Meta) or decomposition
(Composite) kernel in torch's dispatcher, and that names no file: `aten::from_file` (a CPU
kernel only) and TorchScript's `aten::save` (no dispatcher kernel at all) are not in it, and no
operator a later torch adds is trusted before the list is regenerated and reviewed:

    python -m modelops_builder.export_ops   # rewrites export_ops.txt from the installed torch

Reading the list is pure (a text file beside this module); only the generator imports torch.
"""

from __future__ import annotations

import functools
import sys
from importlib import resources

LIST_FILE = "export_ops.txt"
NAMESPACES = ("aten", "prims")
# Higher-order operators torch.export emits around subgraphs (each subgraph is checked too).
HIGHER_ORDER_OPS = frozenset({
    "cond", "while_loop", "map_impl", "scan", "associative_scan", "wrap_with_set_grad_enabled",
    "wrap_with_autocast", "auto_functionalized", "auto_functionalized_v2",
})  # fmt: skip
# Dispatcher kernels that make an overload traceable by torch.export (fake tensors).
_TRACEABLE_KEYS = (
    "Meta",
    "CompositeImplicitAutograd",
    "CompositeExplicitAutograd",
    "CompositeExplicitAutogradNonFunctional",
)
# An argument with one of these names reads or writes a file.
_FILE_ARGUMENTS = frozenset({"filename", "file", "path", "f"})


@functools.cache
def allowed_ops() -> frozenset[str]:
    """`namespace.op.overload` of every operator a graph may call (from export_ops.txt)."""
    text = resources.files(__package__).joinpath(LIST_FILE).read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


def allowed_target(target: str) -> bool:
    """Whether a graph node's `torch.ops....` target is on the allow-list."""
    namespace, _, rest = target.removeprefix("torch.ops.").partition(".")
    if not target.startswith("torch.ops.") or not rest:
        return False
    if namespace == "higher_order":
        return rest in HIGHER_ORDER_OPS
    return namespace in NAMESPACES and f"{namespace}.{rest}" in allowed_ops()


def generate() -> list[str]:
    """The list for the installed torch (the rule of this module's docstring), read in a fresh
    interpreter: importing more of torch (inductor, for one) registers more operators."""
    import torch

    names = set()
    for schema in torch._C._jit_get_all_schemas():
        namespace, _, op = schema.name.partition("::")
        if namespace not in NAMESPACES:
            continue
        qualified = schema.name + (f".{schema.overload_name}" if schema.overload_name else "")
        if any(arg.name in _FILE_ARGUMENTS for arg in schema.arguments):
            continue
        try:
            traceable = any(
                torch._C._dispatch_has_kernel_for_dispatch_key(qualified, key)
                for key in _TRACEABLE_KEYS
            )
        except RuntimeError:  # not in the dispatcher (TorchScript-only operators)
            continue
        if traceable:
            names.add(f"{namespace}.{op}.{schema.overload_name or 'default'}")
    return sorted(names)


def main() -> int:
    """Rewrite export_ops.txt beside this module from the installed torch."""
    path = resources.files(__package__).joinpath(LIST_FILE)
    names = generate()
    with resources.as_file(path) as file:
        file.write_text("\n".join(names) + "\n", encoding="utf-8")
    print(f"{len(names)} operators written to {LIST_FILE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
