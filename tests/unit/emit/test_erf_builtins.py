"""graph/onnx_ops.erf_as_builtins: Erf (exact GELU) as ops TFLite has builtins for, checked in onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from edgekiln.compiler.graph.onnx_ops import erf_as_builtins
from tests.unit.bert_onnx import tiny_bert, tokens


def _erf_model() -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node("Erf", ["x"], ["y"], name="erf")], "erf",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _run(model: onnx.ModelProto, feed: dict) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString()).run(None, feed)[0]


def test_erf_is_replaced_by_builtin_ops_within_a_float32_rounding_of_it():
    x = np.concatenate([np.linspace(-6, 6, 100_001), [0.0, -0.0, 1e-30, -1e-30, 40.0, -40.0]]).astype(np.float32)
    model = _erf_model()
    exact = _run(model, {"x": x})
    assert erf_as_builtins(model) == 1
    onnx.checker.check_model(model)
    assert {n.op_type for n in model.graph.node} <= {"Abs", "Add", "Mul", "Div", "Exp", "Neg", "Sub", "Sign"}
    rewritten = _run(model, {"x": x})
    assert float(np.max(np.abs(rewritten - exact))) < 1e-6 and np.isfinite(rewritten).all()
    assert np.all(rewritten[x == 0] == 0)  # odd, and exactly 0 at 0


def test_an_encoder_keeps_its_outputs_and_a_model_without_erf_is_left_alone():
    model, data = tiny_bert(), tokens(8, 12, seed=2)
    before = _run(model, data)
    assert erf_as_builtins(model) == 2  # one GELU per layer
    assert float(np.max(np.abs(_run(model, data) - before))) < 1e-5
    plain = _erf_model()
    plain.graph.node[0].op_type = "Relu"
    assert erf_as_builtins(plain) == 0 and [n.op_type for n in plain.graph.node] == ["Relu"]
