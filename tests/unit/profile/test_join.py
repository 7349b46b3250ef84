"""The profile's arithmetic that needs no interpreter: the 80 % mark, sum vs whole, layer matching."""

from __future__ import annotations

from edgekiln.compiler.profile import AGREEMENT, _mark_hot, agreement, block
from edgekiln.compiler.profile.stage import layers_side_by_side
from edgekiln.compiler.profile.static import OpFacts, onnx_facts, onnx_match


def _rows(*ms: float) -> list[dict]:
    return [{"name": f"op{k}", "layer": f"layer{k % 2}", "ms": m} for k, m in enumerate(ms)]


def test_hot_ops_are_the_slowest_that_together_take_80_percent():
    rows = _rows(5.0, 3.0, 1.0, 0.5, 0.5)  # 10 ms: 5 + 3 = 80 % is reached after the second row
    _mark_hot(rows)
    assert [r["hot"] for r in rows] == [True, True, False, False, False]


def test_agreement_is_the_ratio_and_its_bound():
    assert agreement(1.1, 1.0) == {"ratio": 1.1, "within": True, "bound": AGREEMENT}
    assert agreement(1.3, 1.0)["within"] is False and agreement(0.75, 1.0)["within"] is False
    assert agreement(1.0, 0.0)["within"] is False  # no whole measured: nothing adds up


def test_the_manifest_block_keeps_the_top_rows():
    profile = {"method": "prefix-differences", "threads": 1, "total_ms": 2.0, "sum_ms": 2.1, "profile_s": 0.5,
               "agreement": agreement(2.1, 2.0), "runs": 30, "estimate": None, "ops": _rows(1.0, 0.6, 0.5)}
    kept = block(profile, top=2)
    assert [op["name"] for op in kept["ops"]] == ["op0", "op1"] and kept["ops_total"] == 3
    assert kept["sum_ms"] == 2.1 and kept["total_ms"] == 2.0 and kept["method"] == "prefix-differences"


def test_layers_are_matched_by_name_slowest_first():
    before = {"ops": _rows(1.0, 2.0, 1.0)}  # layer0: 2.0, layer1: 2.0
    after = {"ops": [{"layer": "layer0", "ms": 0.5}, {"layer": "new", "ms": 0.1}]}
    rows = layers_side_by_side(before, after, ("unpruned_ms", "pruned_ms"))
    by_layer = {r["layer"]: r for r in rows}
    assert by_layer["layer0"] == {"layer": "layer0", "unpruned_ms": 2.0, "pruned_ms": 0.5, "ratio": 0.25}
    assert by_layer["layer1"]["pruned_ms"] == 0.0 and by_layer["new"]["ratio"] is None
    assert rows[-1]["layer"] == "new"


def test_onnxruntime_names_are_matched_to_source_nodes():
    conv = OpFacts("/conv/Conv", 100, 10, 40, "float32", None)
    facts = {"/conv/Conv": conv, "/conv/Conv_output_0": conv}
    assert onnx_match("/conv/Conv", facts) is conv
    assert onnx_match("/conv/Conv_output_0_nchwc", facts) is conv
    assert onnx_match("ReorderOutput", facts) is None


def _conv_relu(conv: str, weight: str, bias: str, relu: str) -> bytes:
    """x -> Conv (3x3, 4 filters) -> Relu, with these node and weight names."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weights = [numpy_helper.from_array(np.ones((4, 1, 3, 3), np.float32), weight),
               numpy_helper.from_array(np.zeros(4, np.float32), bias)]
    nodes = [helper.make_node("Conv", ["x", weight, bias], ["c"], name=conv, pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"], name=relu)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_a_tf2onnx_convolution_is_named_by_the_keras_layers_of_its_scopes():
    """tf2onnx names a Keras model's convolution Conv__3; its weights carry the layers' TensorFlow scopes (name +
    _N). A PyTorch export's node names are kept as they are."""
    keras = onnx_facts(_conv_relu("Conv__3", "conv2d_4_1/convolution/merged_input:0",
                                  "batch_normalization_4_1/batchnorm/sub:0", "re_lu_4_1/Relu"))
    assert keras["Conv__3"].layer == "conv2d_4+batch_normalization_4" and keras["re_lu_4_1/Relu"].layer == "re_lu_4"
    assert keras["y"].layer == "conv2d_4+batch_normalization_4+re_lu_4"  # the Relu fused into the convolution
    wrapped = onnx_facts(_conv_relu("Conv__3", "StatefulPartitionedCall/model_1/conv2d_4_1/convolution/w:0",
                                    "StatefulPartitionedCall/model_1/batch_normalization_4_1/batchnorm/sub:0",
                                    "StatefulPartitionedCall/model_1/re_lu_4_1/Relu"))
    assert wrapped["y"].layer == "conv2d_4+batch_normalization_4+re_lu_4"  # the model's own scope is not a layer
    torch = onnx_facts(_conv_relu("/0/0.0/Conv", "0.0.weight", "0.0.bias", "/0/0.2/Relu"))
    assert torch["/0/0.0/Conv"].layer == "/0/0.0/Conv" and torch["y"].layer == "/0/0.0/Conv+/0/0.2/Relu"
