"""16-bit QDQ (the ONNX 16x8 candidate) on tiny onnx.helper models with an activation outlier (no TensorFlow):
what the quantizer writes, how the estimate reads it, and that the bundle's runtime computes it faithfully."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgekiln import targets
from edgekiln.compiler.analyze.onnx_stats import onnx_stats
from edgekiln.compiler.device.estimate import candidate_ms, target_estimate
from edgekiln.compiler.emit import EmitOptions
from edgekiln.compiler.emit.onnx_convert import quantized
from edgekiln.compiler.evaluate.metrics import fidelity
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.recipe import CalibrationMethod, Quantize
from edgekiln.runtime import Model
from tests.unit.onnx_models import spread_conv_net


def _qdq(model: onnx.ModelProto, x: np.ndarray, activation: str, folder: Path) -> bytes:
    folder.mkdir()
    options = EmitOptions(Quantize.int8, True, CalibrationMethod.minmax, activation, folder)
    return quantized(model.SerializeToString(), Dataset({"x": x}, None, "test"), options)


def _outlier_matmuls() -> onnx.ModelProto:
    """x [1, 8] -> MatMul (output column 0 is 300x the others) -> MatMul that ignores column 0 -> y [1, 4]."""
    rng = np.random.default_rng(3)
    first = rng.normal(0, 0.5, (8, 8)).astype(np.float32)
    first[:, 0] *= 300.0
    second = rng.normal(0, 0.5, (8, 4)).astype(np.float32)
    second[0] = 0.0
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "outlier", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              [numpy_helper.from_array(first, "w1"), numpy_helper.from_array(second, "w2")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _fidelity(model: onnx.ModelProto, compiled: bytes, x: np.ndarray) -> float:
    want = np.concatenate([Model("onnx", model.SerializeToString()).predict(s[None]) for s in x])
    got = np.concatenate([Model("onnx", compiled).predict(s[None]) for s in x])
    sqnr = fidelity([want], [got])["sqnr_db"]
    assert sqnr is not None
    return float(sqnr)


def test_16_bit_qdq_keeps_the_channels_an_outlier_takes_from_int8(tmp_path: Path) -> None:
    # Through the bundle's runtime: onnxruntime rewrites DequantizeLinear(int8 weight) -> MatMul into MatMulNBits,
    # whose default accuracy level quantizes its input to int8 per block, and the outlier column erased the
    # others again (measured: SQNR ~0 dB); the runtime asks for float32 (session.qdq_matmulnbits_accuracy_level).
    model = _outlier_matmuls()
    x = np.random.default_rng(2).random((16, 8), np.float32)
    int8, sixteen = (_qdq(model, x, a, tmp_path / a) for a in ("int8", "int16"))
    written = onnx.load_from_string(sixteen)
    assert max(o.version for o in written.opset_import if o.domain in ("", "ai.onnx")) >= 21  # int16 Q/DQ
    zero_points = {numpy_helper.to_array(t).dtype for t in written.graph.initializer if t.name.endswith("zero_point")}
    assert np.dtype(np.int16) in zero_points and np.dtype(np.int8) in zero_points  # activations, weights
    assert _fidelity(model, int8, x) < 10
    assert _fidelity(model, sixteen, x) > _fidelity(model, int8, x) + 20


def test_the_estimate_charges_16_bit_qdq_no_faster_than_float32_and_says_why(tmp_path: Path) -> None:
    model = spread_conv_net()
    x = np.random.default_rng(1).random((8, 3, 8, 8), np.float32)
    records = {a: onnx_stats(_qdq(model, x, a, tmp_path / a)).records for a in ("int8", "int16")}
    convs = {a: [r for r in rs if r.op == "Conv"] for a, rs in records.items()}
    assert {r.input_dtype for r in convs["int16"]} == {"int16"} and {r.input_dtype for r in convs["int8"]} == {"int8"}
    assert sum(r.op == "QuantizeLinear" for r in records["int16"]) > sum(r.op == "QuantizeLinear"
                                                                         for r in records["int8"])  # unfused
    rpi4 = targets.load("rpi4")
    float_ms = candidate_ms(rpi4, "onnx", onnx_stats(model.SerializeToString()).records)
    int8_ms, sixteen_ms = (candidate_ms(rpi4, "onnx", records[a]) for a in ("int8", "int16"))
    assert float_ms is not None and int8_ms is not None and sixteen_ms is not None
    assert int8_ms < float_ms <= sixteen_ms
    bases = target_estimate(rpi4, records["int16"], "onnx")["per_op_basis"]
    assert "fuses no 16-bit QDQ group" in bases["int16_activations"] and "dynamic_range" not in bases
