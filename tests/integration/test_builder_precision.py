"""fp16 on every graph: outputs that feed other nodes, numerically sensitive ops kept in fp32,
control flow refused clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelops_builder.errors import BuildError
from modelops_builder.pipeline import build
from modelops_builder.precision import KEEP_FP32, convert_fp16
from tests.support.builder_cases import make_request, sha_of

FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
RNG = np.random.default_rng(3)


def _save(
    nodes: list[onnx.NodeProto], outputs: list[str], weights: dict[str, np.ndarray], path: Path
) -> str:
    x = helper.make_tensor_value_info("x", FLOAT, ["b", 8])
    outs = [helper.make_tensor_value_info(n, FLOAT, None) for n in outputs]
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]
    graph = helper.make_graph(nodes, "g", [x], outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    model = onnx.shape_inference.infer_shapes(model)
    onnx.save(model, str(path))
    return sha_of(path)


def test_a_graph_output_that_feeds_another_node_converts(tmp_path: Path) -> None:
    # sum = Add(Relu(MatMul(x, w)), b); prob = Sigmoid(sum); both are graph outputs.
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["mm"]),
        helper.make_node("Relu", ["mm"], ["r"]),
        helper.make_node("Add", ["r", "b"], ["sum"]),
        helper.make_node("Sigmoid", ["sum"], ["prob"]),
    ]
    path = tmp_path / "two.onnx"
    weights = {"w": RNG.standard_normal((8, 4)), "b": RNG.standard_normal(4)}
    sha = _save(nodes, ["sum", "prob"], weights, path)
    result = build(make_request(path, sha, tmp_path / "store", precision="fp16"), local_source=True)
    manifest = result.manifest
    assert [(s.name, s.data_type) for s in manifest.outputs] == [("sum", "FP32"), ("prob", "FP32")]
    assert manifest.accuracy is not None
    assert manifest.accuracy.max_abs_error < 1e-2
    graph = onnx.load(str(manifest.version_dir(result.entry) / "model.onnx"))
    assert {t.name: t.data_type for t in graph.graph.initializer} == {"w": HALF, "b": HALF}


def _types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    types = {v.name: v.type.tensor_type.elem_type for v in values}
    return types | {t.name: t.data_type for t in inferred.graph.initializer}


def test_sensitive_ops_read_and_write_fp32_the_rest_fp16(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("LayerNormalization", ["h", "gamma", "beta"], ["n"], axis=-1),
        helper.make_node("MatMul", ["n", "w2"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["p"], axis=-1),
        helper.make_node("ReduceMean", ["p"], ["m"], keepdims=1),
        helper.make_node("Mul", ["p", "m"], ["y"]),
    ]
    weights = {
        "w": RNG.standard_normal((8, 8)),
        "gamma": np.ones(8),
        "beta": np.zeros(8),
        "w2": RNG.standard_normal((8, 8)),
    }
    _save(nodes, ["y"], weights, tmp_path / "m.onnx")
    report = convert_fp16(tmp_path / "m.onnx", tmp_path / "h.onnx")
    converted = onnx.load(str(tmp_path / "h.onnx"))
    types = _types(converted)
    for node in converted.graph.node:
        if node.op_type == "Cast":
            continue
        floats = [types[i] for i in [*node.input, *node.output] if types.get(i) in (FLOAT, HALF)]
        want = FLOAT if node.op_type in KEEP_FP32 else HALF
        assert set(floats) == {want}, (node.op_type, floats)
    assert types["gamma"] == FLOAT  # read only by LayerNormalization: stays fp32
    assert types["w"] == HALF
    assert report.fp32_values == 3  # n, p, m
    assert types["y"] == FLOAT  # the output keeps its declared type


def test_control_flow_is_refused_with_the_fix(tmp_path: Path) -> None:
    branch = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["z"])],
        "b",
        [],
        [helper.make_tensor_value_info("z", FLOAT, None)],
    )
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
        helper.make_node("Greater", ["s", "zero"], ["c"]),
        helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch),
    ]
    _save(nodes, ["y"], {"zero": np.zeros(())}, tmp_path / "if.onnx")
    with pytest.raises(BuildError) as caught:
        convert_fp16(tmp_path / "if.onnx", tmp_path / "out.onnx")
    assert caught.value.reason == "PrecisionConversionFailed"
    assert "build precision fp32" in caught.value.message
