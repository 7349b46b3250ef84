"""latency.host is made as the candidate rows are: interleaved rounds, p50 the median of the round p50s; its
`how` says so (real onnxruntime on a tiny model; no assertion on how fast anything is)."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from edgekiln.compiler.evaluate.timing import ROUNDS, side_by_side
from edgekiln.compiler.manifest_schema import WHERE
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.runtime import Model


def matmul_model() -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    w = numpy_helper.from_array(np.ones((8, 4), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [x], [y], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_side_by_side_is_the_median_of_interleaved_rounds_and_says_so():
    models = [Model("onnx", matmul_model(), 1), Model("onnx", matmul_model(), 1)]
    data = Dataset({"x": np.ones((3, 8), np.float32)}, None, "test")
    timed = side_by_side(models, data, runs=2 * ROUNDS)
    assert len(timed) == 2
    for latency in timed:
        how = latency["how"]
        assert how["where"] in WHERE and how["where"] == "host"
        assert how["rounds"] == ROUNDS and f"median of {ROUNDS} interleaved round p50s" in how["statistic"]
        assert how["runs"] == latency["runs"] and latency["runs"] % ROUNDS == 0 and latency["runs"] >= 2 * ROUNDS
        assert how["threads"] == 1 and how["samples"] == 1
        assert 0 < latency["p50_ms"] <= latency["p99_ms"]
