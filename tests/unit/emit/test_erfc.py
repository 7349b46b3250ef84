"""tf2onnx's `Erfc` (not an ONNX operator: Keras' exact GELU) rewritten as 1 - Erf, so onnxruntime loads it."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from edgekiln.compiler.graph.onnx_ops import standard_erfc


def _erfc_model() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])
    nodes = [helper.make_node("Neg", ["x"], ["n"], name="neg"),
             helper.make_node("Erfc", ["n"], ["e"], name="gelu/Erfc"),  # as tf2onnx 1.17 writes it
             helper.make_node("Mul", ["x", "e"], ["y"], name="mul")]
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])


def test_onnxruntime_refuses_the_erfc_node_as_tf2onnx_writes_it():
    with pytest.raises(Exception, match="Erfc"):
        ort.InferenceSession(_erfc_model().SerializeToString(), providers=["CPUExecutionProvider"])


def test_the_rewrite_runs_and_computes_erfc():
    model = _erfc_model()
    assert standard_erfc(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Neg", "Erf", "Sub", "Mul"]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.linspace(-3, 3, 10, dtype=np.float32).reshape(2, 5)
    expected = x * np.vectorize(math.erfc)(-x.astype(np.float64))
    np.testing.assert_allclose(session.run(None, {"x": x})[0], expected, rtol=1e-5, atol=1e-6)


def test_a_model_without_erfc_is_left_as_it_was():
    model = _erfc_model()
    model.graph.node[1].op_type = "Erf"
    before = model.SerializeToString()
    assert standard_erfc(model) == 0 and model.SerializeToString() == before


def test_a_tf2onnx_output_onnxruntime_cannot_load_is_refused_in_one_line():
    from edgekiln.compiler.emit.onnx_convert import _check_runs
    from edgekiln.compiler.errors import ConversionError

    with pytest.raises(ConversionError, match="onnxruntime cannot load the tf2onnx output: .*No Op registered for "
                                              "Erfc") as caught:
        _check_runs(_erfc_model().SerializeToString())
    assert "\n" not in caught.value.one_line() and caught.value.one_line().endswith("(use --format tflite)")
