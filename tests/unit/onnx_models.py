"""Tiny ONNX models built with onnx.helper for the ONNX tests (no exporter, no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def conv_net(batch: int | str = "N", opset: int = 17, weights_as_constants: bool = False,
             seed: int = 0) -> onnx.ModelProto:
    """x [batch, 3, 8, 8] -> Conv 3->4 (3x3, pad 1) -> Relu -> GlobalAveragePool -> Flatten -> Gemm 4->2."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32)
    b = rng.normal(0, 0.1, (4,)).astype(np.float32)
    fc = rng.normal(0, 0.5, (2, 4)).astype(np.float32)
    fc_b = np.zeros(2, np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "fc_b"], ["y"], transB=1),
    ]
    tensors = {"w": w, "b": b, "fc": fc, "fc_b": fc_b}
    initializers = [numpy_helper.from_array(v, k) for k, v in tensors.items()]
    if weights_as_constants:
        nodes = [helper.make_node("Constant", [], [k], value=t) for k, t in zip(tensors, initializers,
                                                                                strict=True)] + nodes
        initializers = []
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 2])
    graph = helper.make_graph(nodes, "conv_net", [x], [y], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def single_op(op: str, domain: str = "", opset: int = 17, inputs: int = 1, dtype: int = TensorProto.FLOAT,
              **attrs: object) -> onnx.ModelProto:
    """x [1, 4] (fed to every input) -> op -> y, for ops a runtime may lack."""
    imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    node = helper.make_node(op, ["x"] * inputs, ["y"], domain=domain, **attrs)
    graph = helper.make_graph([node], "single", [helper.make_tensor_value_info("x", dtype, [1, 4])],
                              [helper.make_tensor_value_info("y", dtype, [1, 4])])
    return helper.make_model(graph, opset_imports=imports)


def save(model: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


def spread_conv_net(seed: int = 0) -> onnx.ModelProto:
    """x [1, 3, 8, 8] -> Conv a -> Relu -> Conv spread (one output channel 300x the others) -> Relu -> Conv b
    -> GlobalAveragePool -> Flatten -> Gemm: int8 of conv_spread's output spends its range on one channel."""
    rng = np.random.default_rng(seed)

    def conv(name: str, cin: int, cout: int, scale: np.ndarray | None = None) -> list[onnx.TensorProto]:
        w = rng.normal(0, 0.3, (cout, cin, 3, 3)).astype(np.float32)
        w = w if scale is None else w * scale[:, None, None, None]
        return [numpy_helper.from_array(w, f"{name}_w"), numpy_helper.from_array(np.zeros(cout, np.float32),
                                                                                 f"{name}_b")]

    spread = np.ones(8, np.float32)
    spread[0] = 300.0
    initializers = [*conv("a", 3, 8), *conv("s", 8, 8, spread), *conv("b", 8, 8),
                    numpy_helper.from_array(rng.normal(0, 0.5, (4, 8)).astype(np.float32), "fc"),
                    numpy_helper.from_array(np.zeros(4, np.float32), "fc_b")]
    nodes = [helper.make_node("Conv", ["x", "a_w", "a_b"], ["a"], pads=[1, 1, 1, 1], name="conv_a"),
             helper.make_node("Relu", ["a"], ["ar"], name="relu_a"),
             helper.make_node("Conv", ["ar", "s_w", "s_b"], ["s"], pads=[1, 1, 1, 1], name="conv_spread"),
             helper.make_node("Relu", ["s"], ["sr"], name="relu_s"),
             helper.make_node("Conv", ["sr", "b_w", "b_b"], ["b"], pads=[1, 1, 1, 1], name="conv_b"),
             helper.make_node("GlobalAveragePool", ["b"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fc", "fc_b"], ["y"], transB=1, name="fc")]
    graph = helper.make_graph(nodes, "spread", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def outlier_chain(seed: int = 3) -> onnx.ModelProto:
    """x [1, 8] -> MatMul mm_a -> Relu -> MatMul mm_b (output column 0 is 300x the others) -> MatMul mm_c (ignores
    column 0) -> Relu -> MatMul mm_d -> y: int8 of mm_b's output spends its one scale on the outlier column and
    erases what mm_c reads; the other layers are ordinary."""
    rng = np.random.default_rng(seed)
    w = {k: rng.normal(0, 0.5, (8, 8)).astype(np.float32) for k in "abcd"}
    w["b"][:, 0] *= 300.0
    w["c"][0] = 0.0
    nodes = [helper.make_node("MatMul", ["x", "a"], ["ha"], name="mm_a"),
             helper.make_node("Relu", ["ha"], ["ra"], name="relu_a"),
             helper.make_node("MatMul", ["ra", "b"], ["hb"], name="mm_b"),
             helper.make_node("MatMul", ["hb", "c"], ["hc"], name="mm_c"),
             helper.make_node("Relu", ["hc"], ["rc"], name="relu_c"),
             helper.make_node("MatMul", ["rc", "d"], ["y"], name="mm_d")]
    graph = helper.make_graph(nodes, "outlier_chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
                              [numpy_helper.from_array(v, k) for k, v in w.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def detector_head(seed: int = 4) -> onnx.ModelProto:
    """x [1, 8] -> box_head (4 coordinates in pixels, ~60..320) and score_head -> Sigmoid (12 scores in [0, 1]) ->
    Concat -> Mul by [1/320 x 4, 1 x 12] (boxes normalised by the image size) -> y [1, 16]: one int8 scale for
    the Concat's output (a step of 1.25) erases the scores, as in a detector's exported output."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("MatMul", ["x", "wb"], ["boxes"], name="box_head"),
             helper.make_node("MatMul", ["x", "ws"], ["logits"], name="score_head"),
             helper.make_node("Sigmoid", ["logits"], ["scores"], name="sigmoid"),
             helper.make_node("Concat", ["boxes", "scores"], ["joined"], axis=1, name="concat"),
             helper.make_node("Mul", ["joined", "norm"], ["y"], name="normalise")]
    norm = np.concatenate([np.full(4, 1 / 320, np.float32), np.ones(12, np.float32)])
    initializers = [numpy_helper.from_array((rng.random((8, 4)) * 80).astype(np.float32), "wb"),
                    numpy_helper.from_array(rng.normal(0, 1, (8, 12)).astype(np.float32), "ws"),
                    numpy_helper.from_array(norm, "norm")]
    graph = helper.make_graph(nodes, "detector_head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
