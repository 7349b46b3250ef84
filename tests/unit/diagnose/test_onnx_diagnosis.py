"""Per-node int8 error of an onnxruntime QDQ model (compiler/onnx_diagnose.py), on a tiny conv net."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekiln.compiler.diagnose import onnx_diagnosis as onnx_diagnose
from edgekiln.compiler.emit import EmitOptions
from edgekiln.compiler.emit.onnx_convert import quantized
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.recipe import CalibrationMethod, Quantize
from tests.unit.onnx_models import conv_net


def _named_conv_net() -> bytes:
    model = conv_net(batch=1)
    for i, node in enumerate(model.graph.node):
        node.name = f"{node.op_type.lower()}_{i}"
    return model.SerializeToString()


def test_nodes_are_ranked_by_their_share_of_the_int8_error(tmp_path: Path) -> None:
    x = np.random.default_rng(5).random((24, 3, 8, 8), np.float32)
    options = EmitOptions(Quantize.int8, False, CalibrationMethod.minmax, "uint8", tmp_path)
    int8 = quantized(_named_conv_net(), Dataset({"x": x}, None, "test"), options)
    prepared = (tmp_path / "onnx_prepared.onnx").read_bytes()
    errors = onnx_diagnose.node_errors(prepared, int8, [{"x": x[i:i + 1]} for i in range(8)])
    assert {e.op for e in errors} >= {"Conv", "Gemm"}
    assert [e.added for e in errors] == sorted((e.added for e in errors), reverse=True)
    assert abs(sum(e.share for e in errors) - 1.0) < 1e-6 and errors[0].share > 0
    assert [e.op for e in errors if e.output] == ["Gemm"]  # the last layer produces the graph output
    assert all(e.sqnr_db is None or 15 < e.sqnr_db < 80 for e in errors)  # int8 noise, not a mismatch
    report = onnx_diagnose.report(errors, 8)
    assert report["of"].startswith("int8 (plain") and report["nodes"][0]["name"] == errors[0].name
    assert report["causes"][0].startswith(f"{errors[0].name} ({errors[0].op}) adds")
    assert all("layer" not in node for node in report["nodes"])  # names not tf2onnx's: the node names are the user's


# conv_net as tf2onnx names a Keras model's graph: its convolution inserted (Conv__3), the rest and every weight
# under the layers' TensorFlow scopes (layer name + _N).
TF2ONNX_NAMES = {"w": "conv2d_1/convolution/merged_input:0", "b": "batch_normalization_1/batchnorm/sub:0",
                 "fc": "dense_1/Cast/ReadVariableOp:0", "fc_b": "dense_1/BiasAdd/ReadVariableOp:0"}
TF2ONNX_NODES = {"Conv": "Conv__3", "Relu": "re_lu_1/Relu", "GlobalAveragePool": "global_average_pooling2d_1/Mean",
                 "Flatten": "flatten_1/Reshape", "Gemm": "dense_1/MatMul_Gemm__5"}


def _tf2onnx_conv_net() -> bytes:
    model = conv_net(batch=1)
    for node in model.graph.node:
        node.name = TF2ONNX_NODES[node.op_type]
        node.input[:] = [TF2ONNX_NAMES.get(i, i) for i in node.input]
    for tensor in model.graph.initializer:
        tensor.name = TF2ONNX_NAMES[tensor.name]
    return model.SerializeToString()


def test_a_keras_models_nodes_are_named_by_their_layers_through_the_int8_weights(tmp_path: Path) -> None:
    """In the QDQ model the convolution reads its weights through DequantizeLinear: their scopes name the layers."""
    x = np.random.default_rng(5).random((24, 3, 8, 8), np.float32)
    options = EmitOptions(Quantize.int8, False, CalibrationMethod.minmax, "uint8", tmp_path)
    int8 = quantized(_tf2onnx_conv_net(), Dataset({"x": x}, None, "test"), options)
    prepared = (tmp_path / "onnx_prepared.onnx").read_bytes()
    errors = onnx_diagnose.node_errors(prepared, int8, [{"x": x[i:i + 1]} for i in range(8)])
    layers = {e.op: e.layer for e in errors}
    assert layers["Conv"] == "conv2d+batch_normalization" and layers["Gemm"] == "dense"
    conv = next(e for e in errors if e.op == "Conv")
    assert conv.name == "Conv__3" and conv.to_dict()["layer"] == "conv2d+batch_normalization"
    assert "(layer conv2d+batch_normalization)" in " ".join(onnx_diagnose.report(errors, 8)["causes"])


def test_identical_models_have_no_error() -> None:
    model = _named_conv_net()
    x = np.random.default_rng(1).random((2, 3, 8, 8), np.float32)
    errors = onnx_diagnose.node_errors(model, model, [{"x": x[i:i + 1]} for i in range(2)])
    assert errors and all(e.added == 0 and e.sqnr_db is None for e in errors)
