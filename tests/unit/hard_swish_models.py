"""Tiny ONNX models with hard-swish and hard-sigmoid in the spellings exporters write (HardSwish, x * HardSigmoid(x),
x * Clip(x + 3, 0, 6) / 6, a lone HardSigmoid gate), for the fast-path canonicalization (graph/onnx_fast_path.py)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SPELLINGS = ("HardSwish", "x*HardSigmoid(x)", "x*Clip(x+3,0,6)/6")


def _activation(spelling: str, x: str, out: str) -> list[onnx.NodeProto]:
    if spelling in ("HardSwish", "Relu"):  # Relu: a block with nothing to respell
        return [helper.make_node(spelling, [x], [out])]
    if spelling == "x*HardSigmoid(x)":
        return [helper.make_node("HardSigmoid", [x], [f"{out}_gate"], alpha=1 / 6, beta=0.5),
                helper.make_node("Mul", [x, f"{out}_gate"], [out])]
    return [helper.make_node("Add", [x, "three"], [f"{out}_shifted"]),
            helper.make_node("Clip", [f"{out}_shifted", "zero", "six"], [f"{out}_relu6"]),
            helper.make_node("Mul", [x, f"{out}_relu6"], [f"{out}_product"]),
            helper.make_node("Div", [f"{out}_product", "six"], [out])]


def hard_swish_cnn(spellings: tuple[str, ...] = SPELLINGS, gate: bool = True, size: int = 16) -> onnx.ModelProto:
    """x [1, 3, size, size] -> one Conv (8 channels) + hard-swish block per spelling -> (with `gate`: a
    squeeze-excite gate, GlobalAveragePool -> Conv 1x1 -> HardSigmoid(alpha 0.2) -> Mul) -> GlobalAveragePool
    -> Flatten -> Gemm 8->4."""
    rng = np.random.default_rng(0)

    def tensor(name: str, value: object) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(value, np.float32), name)

    inits = [tensor("three", 3.0), tensor("zero", 0.0), tensor("six", 6.0), tensor("fc", rng.normal(0, 0.5, (4, 8)))]
    nodes: list[onnx.NodeProto] = []
    prev, channels = "x", 3
    for i, spelling in enumerate(spellings):
        inits += [tensor(f"w{i}", rng.normal(0, 0.5, (8, channels, 3, 3))), tensor(f"b{i}", rng.normal(0, 0.2, 8))]
        nodes += [helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  *_activation(spelling, f"c{i}", f"h{i}")]
        prev, channels = f"h{i}", 8
    if gate:
        inits += [tensor("se_w", rng.normal(0, 0.5, (8, 8, 1, 1))), tensor("se_b", rng.normal(0, 0.2, 8))]
        nodes += [helper.make_node("GlobalAveragePool", [prev], ["squeezed"]),
                  helper.make_node("Conv", ["squeezed", "se_w", "se_b"], ["excite"]),
                  helper.make_node("HardSigmoid", ["excite"], ["se_gate"], alpha=0.2, beta=0.5),
                  helper.make_node("Mul", [prev, "se_gate"], ["gated"])]
        prev = "gated"
    nodes += [helper.make_node("GlobalAveragePool", [prev], ["pooled"]),
              helper.make_node("Flatten", ["pooled"], ["flat"]),
              helper.make_node("Gemm", ["flat", "fc"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "hard_swish_cnn",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def images(count: int, size: int = 16, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (count, 3, size, size)).astype(np.float32)
