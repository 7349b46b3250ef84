"""runtime.Model: the layout recorded for a converted model is undone, and any batch size runs."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from edgekiln.runtime import Model
from edgekiln.runtime.model import to_compiled, to_source

NHWC = {"source": "NCHW", "compiled": "NHWC", "perm": [0, 2, 3, 1]}


def _nhwc_model(batch: int | str) -> bytes:
    """y = relu(x) * [1, 2, 3] along the last (channel) axis: layout mistakes change the numbers."""
    scale = helper.make_tensor("s", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mul", ["r", "s"], ["y"])]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4, 5, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4, 5, 3])
    graph = helper.make_graph(nodes, "nhwc", [x], [y], [scale])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _expected(x_nchw: np.ndarray) -> np.ndarray:
    return np.maximum(x_nchw, 0) * np.array([1.0, 2.0, 3.0], np.float32)[None, :, None, None]


def test_perm_round_trip() -> None:
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    assert to_compiled(x, NHWC).shape == (2, 4, 5, 3)
    np.testing.assert_array_equal(to_source(to_compiled(x, NHWC), NHWC), x)
    assert to_compiled(x, None) is x


def test_predict_takes_and_returns_the_source_layout() -> None:
    model = Model("onnx", _nhwc_model(1), layouts={"x": NHWC, "y": NHWC})
    x = np.random.default_rng(0).normal(size=(3, 3, 4, 5)).astype(np.float32)  # NCHW, batch 3 > compiled 1
    np.testing.assert_allclose(model.predict(x), _expected(x), rtol=1e-6)
    assert model.benchmark([x], runs=3, warmup=1)["p50_ms"] > 0


def test_compiled_batch_above_one_runs_any_batch() -> None:
    model = Model("onnx", _nhwc_model(2), layouts={"x": NHWC, "y": NHWC})
    x = np.random.default_rng(1).normal(size=(5, 3, 4, 5)).astype(np.float32)  # 2 + 2 + 1 (padded)
    np.testing.assert_allclose(model.predict(x), _expected(x), rtol=1e-6)
    assert model.benchmark([x[:1]], runs=3, warmup=1)["runs"] == 3
