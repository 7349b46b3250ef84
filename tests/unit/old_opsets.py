"""Tiny ONNX models as old exporters (PaddlePaddle, older PyTorch) write them: opset 11 or 12, IR 7, weights in
`Constant` nodes, height and width left open; and the calibration data they are built with."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def paddle_like(opset: int) -> onnx.ModelProto:
    """x [N, 3, H, W] -> Conv (Constant-node weights) -> Clip(0, 6) as ReLU6 (min/max as inputs, opset 11)
    -> Conv -> x * HardSigmoid(x) (HardSwish) -> GlobalAveragePool -> Flatten -> Gemm 8->4."""
    rng = np.random.default_rng(0)

    def tensor(name: str, value: object) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(value, np.float32), name)

    constants = [tensor("w1", rng.normal(0, 0.4, (8, 3, 3, 3))), tensor("b1", rng.normal(0, 0.1, 8)),
                 tensor("low", 0.0), tensor("high", 6.0)]
    initializers = [tensor("w2", rng.normal(0, 0.3, (8, 8, 3, 3))), tensor("b2", rng.normal(0, 0.1, 8)),
                    tensor("fc", rng.normal(0, 0.5, (4, 8))), tensor("fc_b", np.zeros(4))]
    nodes = [*(helper.make_node("Constant", [], [t.name], value=t) for t in constants),
             helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Clip", ["c1", "low", "high"], ["relu6"]),
             helper.make_node("Conv", ["relu6", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("HardSigmoid", ["c2"], ["gate"], alpha=1 / 6, beta=0.5),
             helper.make_node("Mul", ["c2", "gate"], ["hswish"]),
             helper.make_node("GlobalAveragePool", ["hswish"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("Gemm", ["flat", "fc", "fc_b"], ["y"], transB=1)]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    graph = helper.make_graph(nodes, "paddle_like", [x], [y], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=7)


def hardmax_gate(opset: int = 12) -> onnx.ModelProto:
    """x [1, 3, 8, 8] -> Conv -> Relu -> r * Hardmax(r, axis=1) -> GlobalAveragePool -> Flatten -> Gemm 8->4.

    Before opset 13, Hardmax(axis=1) of a 4-D tensor picks one element of each sample's whole C*H*W; from opset
    13, one channel per position. onnx's converter keeps the node as is, so the raised model computes another
    function: int8 must then keep the opset and quantize weights per tensor.
    """
    rng = np.random.default_rng(1)
    initializers = [numpy_helper.from_array(rng.normal(0, 0.4, (8, 3, 3, 3)).astype(np.float32), "w"),
                    numpy_helper.from_array(rng.normal(0, 0.5, (4, 8)).astype(np.float32), "fc")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Hardmax", ["r"], ["pick"], axis=1),
             helper.make_node("Mul", ["r", "pick"], ["gated"]),
             helper.make_node("GlobalAveragePool", ["gated"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("Gemm", ["flat", "fc"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "hardmax_gate",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=7)


def nan_masked(opset: int = 17) -> onnx.ModelProto:
    """x [1, 3, 16, 16] -> Conv -> Relu (r) -> Sqrt(-1 - 0 * r) (NaN everywhere) -> Where(IsNaN, r, NaN) = r
    -> GlobalAveragePool -> Flatten -> Gemm 8->4: finite outputs, and a NaN activation range on which
    onnxruntime's static int8 quantizer fails ("scale issue"); dynamic int8 and float32 build."""
    rng = np.random.default_rng(2)
    initializers = [numpy_helper.from_array(rng.normal(0, 0.4, (8, 3, 3, 3)).astype(np.float32), "w"),
                    numpy_helper.from_array(rng.normal(0, 0.5, (4, 8)).astype(np.float32), "fc"),
                    numpy_helper.from_array(np.array(-1.0, np.float32), "minus_one")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Add", ["r", "minus_one"], ["shifted"]),
             helper.make_node("Sub", ["shifted", "r"], ["negative"]),
             helper.make_node("Sqrt", ["negative"], ["nan"]),
             helper.make_node("IsNaN", ["nan"], ["is_nan"]),
             helper.make_node("Where", ["is_nan", "r", "nan"], ["masked"]),
             helper.make_node("GlobalAveragePool", ["masked"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("Gemm", ["flat", "fc"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "nan_masked",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def images(count: int, size: int = 16, seed: int = 3) -> np.ndarray:
    """`count` NCHW float32 samples of 3 channels."""
    return np.random.default_rng(seed).normal(size=(count, 3, size, size)).astype(np.float32)
