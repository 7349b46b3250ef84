"""A figure that could not be computed is None with a reason, never 0: ONNX shapes that inference cannot infer
make MACs and bytes unknown, the estimate a lower bound (and no figure to rank candidates by), the RAM check's
sum a lower bound that says so."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgekiln import targets
from edgekiln.compiler.analyze.graph_stats import OpRecord
from edgekiln.compiler.analyze.onnx_stats import onnx_arena_bytes, onnx_stats
from edgekiln.compiler.device import compat, estimate


def reshaped_by_input() -> bytes:
    """x [1, 8] reshaped by a runtime input `shape`, then MatMul by w [8, 4] and Relu: no inference can know
    the shapes after the Reshape."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])
    shape = helper.make_tensor_value_info("shape", TensorProto.INT64, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = numpy_helper.from_array(np.ones((8, 4), np.float32), "w")
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("MatMul", ["r", "w"], ["m"]),
             helper.make_node("Relu", ["m"], ["y"])]
    graph = helper.make_graph(nodes, "g", [x, shape], [y], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def known_matmul() -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    w = numpy_helper.from_array(np.ones((8, 4), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [x], [y], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_unknown_shapes_make_macs_and_bytes_none_with_the_reason():
    stats = onnx_stats(reshaped_by_input())
    matmul = next(r for r in stats.records if r.op == "MatMul")
    assert (matmul.macs, matmul.activation_bytes, matmul.weight_bytes) == (None, None, 8 * 4 * 4)
    assert stats.macs is None
    assert stats.unknown is not None and "3 of 3 ops" in stats.unknown and "shape inference" in stats.unknown
    relu = next(r for r in stats.records if r.op == "Relu")
    assert relu.macs == 0  # an op without multiply-accumulates has 0 of them, known


def test_known_shapes_count_exactly_and_say_nothing_is_unknown():
    stats = onnx_stats(known_matmul())
    assert (stats.macs, stats.unknown) == (8 * 4, None)
    assert stats.records[0].activation_bytes == 4 * (8 + 4)


def test_the_arena_sum_says_it_misses_tensors_of_unknown_shape():
    total, unknown = onnx_arena_bytes(reshaped_by_input())
    assert total == 4 * 8 + 8 * 2  # x (float) and shape (int64): the two tensors whose shapes are known
    assert unknown is not None and unknown.startswith("3 of 5 activation tensors have unknown shapes")
    assert onnx_arena_bytes(known_matmul()) == (4 * (8 + 4), None)


def test_an_estimate_over_unknown_ops_is_a_lower_bound_and_no_figure_for_the_choice():
    rpi4 = targets.load("rpi4")
    records = onnx_stats(reshaped_by_input()).records
    block = estimate.target_estimate(rpi4, records, "onnx")
    assert block is not None and block["lower_bound"] is True
    assert block["how"]["where"] == "estimate" and "lower bounds" in str(block["how"]["unknown"])
    assert estimate.candidate_ms(rpi4, "onnx", records) is None  # refused: a bound does not rank candidates
    known = estimate.target_estimate(rpi4, onnx_stats(known_matmul()).records, "onnx")
    assert known is not None and (known["lower_bound"], known["how"]["unknown"]) == (False, None)


def test_unknown_macs_charge_only_what_is_known():
    rpi4 = targets.load("rpi4")
    assert rpi4.estimate is not None
    unknown = OpRecord("MatMul", "float32", None, 128, None, "float32")
    weights_only = OpRecord("MatMul", "float32", 0, 128, 0, "float32")
    cost = estimate.predict_ms([unknown], rpi4.estimate, 4)
    assert cost.unknown_ops == 1
    assert cost.total_ms == estimate.predict_ms([weights_only], rpi4.estimate, 4).total_ms


def test_the_ram_check_says_when_it_passed_on_a_lower_bound():
    rpi4, notes = targets.load("rpi4"), []
    peak = compat.check_target(rpi4, "onnx", reshaped_by_input(), force=False, notes=notes)
    assert peak.unknown is not None and len(notes) == 1 and "passed on a lower bound" in notes[0]
    how = compat.memory_how(peak)
    assert how["where"] == "estimate" and "a lower bound" in str(how["unknown"])
    known_notes: list[str] = []
    assert compat.check_target(rpi4, "onnx", known_matmul(), False, known_notes).unknown is None
    assert known_notes == [] and compat.memory_how(compat.PeakMemory(1.0))["unknown"] is None


def test_the_fixture_really_defeats_inference():
    inferred = onnx.shape_inference.infer_shapes(onnx.load_from_string(reshaped_by_input()))
    shapes = {v.name: v.type.tensor_type.shape for v in inferred.graph.value_info}
    assert "m" not in shapes or not all(d.HasField("dim_value") for d in shapes["m"].dim)


def test_the_summary_says_the_estimate_is_a_lower_bound():
    from edgekiln.compiler import summary

    rpi4 = targets.load("rpi4")
    bounded = estimate.target_estimate(rpi4, onnx_stats(reshaped_by_input()).records, "onnx")
    exact = estimate.target_estimate(rpi4, onnx_stats(known_matmul()).records, "onnx")
    assert bounded is not None and exact is not None
    assert summary.estimate_range(bounded).startswith("LOWER BOUND, some ops' MACs unknown; range ")
    assert summary.estimate_range(exact).startswith("range ")
