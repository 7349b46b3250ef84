"""tf2onnx's decomposed LayerNorm and GELU, rewritten (real onnxruntime, no TensorFlow): the same numbers,
the pattern really gone, and onnxruntime's transformer optimizer then fuses what it could not before."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgekiln.compiler.emit.onnx_fused import attention_shape, fused, is_transformer
from edgekiln.compiler.graph.onnx_layernorm import canonical_gelu, canonicalize, fuse_layernorm

TOKENS, WIDTH = 6, 8


def _layernorm_nodes(x: str, out: str, p: str) -> list:
    """Keras LayerNormalization as tf2onnx 1.17 writes it (read off its export of sample_models/intent_encoder)."""
    mk = helper.make_node
    return [mk("GlobalAveragePool", [x], [f"{p}mean"]), mk("Neg", [f"{p}mean"], [f"{p}neg"]),
            mk("Sub", [x, f"{p}mean"], [f"{p}d"]), mk("Mul", [f"{p}d", f"{p}d"], [f"{p}sq"]),
            mk("GlobalAveragePool", [f"{p}sq"], [f"{p}var"]), mk("Add", [f"{p}var", "eps"], [f"{p}ve"]),
            mk("Sqrt", [f"{p}ve"], [f"{p}s"]), mk("Reciprocal", [f"{p}s"], [f"{p}r"]),
            mk("Mul", [f"{p}r", f"{p}gamma"], [f"{p}m"]), mk("Mul", [x, f"{p}m"], [f"{p}y1"]),
            mk("Mul", [f"{p}neg", f"{p}m"], [f"{p}y2"]), mk("Add", [f"{p}y2", f"{p}beta"], [f"{p}y3"]),
            mk("Add", [f"{p}y1", f"{p}y3"], [out])]


def _gelu_nodes(x: str, out: str) -> list:
    """Keras' exact GELU after tf2onnx and standard_erfc: 0.5 x * (1 - Erf(-x / sqrt 2))."""
    mk = helper.make_node
    return [mk("Mul", ["half", x], ["g_half"]), mk("Neg", [x], ["g_neg"]), mk("Mul", ["g_neg", "rsqrt2"], ["g_t"]),
            mk("Erf", ["g_t"], ["g_erf"]), mk("Sub", ["one", "g_erf"], ["g_1m"]), mk("Mul", ["g_half", "g_1m"], [out])]


def _model() -> onnx.ModelProto:
    """x [1, 6, 8] -> LayerNorm -> MatMul -> GELU -> MatMul -> residual Add -> LayerNorm."""
    rng = np.random.default_rng(0)
    nodes = [*_layernorm_nodes("x", "ln1", "a_"), helper.make_node("MatMul", ["ln1", "w1"], ["h"]),
             *_gelu_nodes("h", "g"), helper.make_node("MatMul", ["g", "w2"], ["f"]),
             helper.make_node("Add", ["ln1", "f"], ["res"]), *_layernorm_nodes("res", "y", "b_")]
    arrays = {"eps": np.array(1e-3, np.float32), "half": np.array(0.5, np.float32),
              "rsqrt2": np.array(1 / math.sqrt(2), np.float32), "one": np.array(1.0, np.float32),
              "w1": rng.normal(0, 0.5, (WIDTH, 2 * WIDTH)).astype(np.float32),
              "w2": rng.normal(0, 0.5, (2 * WIDTH, WIDTH)).astype(np.float32)}
    for p in ("a_", "b_"):  # tf2onnx keeps gamma and beta as [1, 1, width] constants
        arrays[f"{p}gamma"] = rng.normal(1, 0.2, (1, 1, WIDTH)).astype(np.float32)
        arrays[f"{p}beta"] = rng.normal(0, 0.2, (1, 1, WIDTH)).astype(np.float32)
    graph = helper.make_graph(nodes, "tf2onnx_block", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                      [1, TOKENS, WIDTH])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, TOKENS, WIDTH])],
                              [numpy_helper.from_array(v, k) for k, v in arrays.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_the_decomposed_layernorm_and_gelu_become_one_node_each_with_the_same_numbers() -> None:
    model = _model()
    x = np.random.default_rng(1).normal(0, 3, (1, TOKENS, WIDTH)).astype(np.float32)
    before = _run(model, x)
    assert canonicalize(model) == {"LayerNormalization": 2, "Gelu": 1}
    onnx.checker.check_model(model, full_check=True)
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["LayerNormalization"] == 2 and not {"GlobalAveragePool", "Reciprocal", "Sqrt", "Neg", "Sub"} & set(ops)
    assert ops["Div"] == 1 and ops["Erf"] == 1 and ops["Add"] == 2  # the GELU's 1 + Erf and the residual Add
    assert max(np.abs(_run(model, x) - before).max(), 0) < 1e-5
    assert not {"eps", "a_gamma", "b_beta", "rsqrt2", "one"} & {t.name for t in model.graph.initializer}
    scales = [t for t in model.graph.initializer if t.name.endswith("/ln_scale")]
    assert [list(t.dims) for t in scales] == [[WIDTH], [WIDTH]]


def test_a_pattern_with_an_intermediate_used_elsewhere_is_left_alone() -> None:
    model = _model()
    model.graph.output.append(helper.make_tensor_value_info("a_var", TensorProto.FLOAT, [1, TOKENS, 1]))
    assert fuse_layernorm(model) == 1  # the second LayerNorm still; the first one's variance is an output
    assert sum(n.op_type == "GlobalAveragePool" for n in model.graph.node) == 2


def test_a_gelu_with_another_constant_is_not_rewritten() -> None:
    model = _model()
    for t in model.graph.initializer:
        if t.name == "rsqrt2":
            t.CopyFrom(numpy_helper.from_array(np.array(0.5, np.float32), "rsqrt2"))
    assert canonical_gelu(model) == 0


def test_the_transformer_optimizer_fuses_the_canonical_graph(tmp_path) -> None:
    """Before: nothing for onnxruntime to fuse (it has no pattern for the decomposed form); after: its
    SkipLayerNormalization and Gelu fusions fire, and the fused graph computes the same numbers."""
    model = _model()
    assert is_transformer(model) is False  # no LayerNormalization node, no attention scores
    x = np.random.default_rng(2).normal(0, 3, (1, TOKENS, WIDTH)).astype(np.float32)
    fused_bytes, facts = fused(model.SerializeToString(), tmp_path)
    assert facts["rewrites"] == {"LayerNormalization": 2, "Gelu": 1}
    assert {"SkipLayerNormalization", "Gelu"} <= set(facts["fusions"]), facts
    assert fused_bytes is not None
    out = ort.InferenceSession(fused_bytes, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.abs(out - _run(_model(), x)).max() < 1e-4
    canonical = _model()
    canonicalize(canonical)
    assert is_transformer(canonical) and attention_shape(canonical) == (0, WIDTH)  # no heads to read here
