"""Output kinds read from the source graph (a final Softmax / Sigmoid) and combined with the data's, on constructed
ONNX graphs run by onnxruntime, and Keras layer configs (no TensorFlow)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgekiln.compiler.evaluate import final_activation
from edgekiln.compiler.evaluate.output_kinds import KindRule

RNG = np.random.default_rng(0)


def _heads() -> onnx.ModelProto:
    """x [N, 8] -> five heads: softmax probabilities, a one-unit sigmoid (reshaped to [N]), a 32-d embedding,
    a 4-value box, and 4 sigmoid-squashed box coordinates."""
    nodes, inits, outputs = [], [], []

    def dense(name: str, units: int) -> str:
        inits.append(numpy_helper.from_array(RNG.normal(0, 1, (8, units)).astype(np.float32), f"{name}_w"))
        nodes.append(helper.make_node("MatMul", ["x", f"{name}_w"], [f"{name}_z"], name=f"{name}_matmul"))
        return f"{name}_z"

    def output(name: str, width: list[int | str]) -> None:
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, width))

    nodes.append(helper.make_node("Softmax", [dense("cls", 7)], ["probs"], name="prob", axis=-1))
    nodes.append(helper.make_node("Sigmoid", [dense("bin", 1)], ["bin_p"], name="bin_sigmoid"))
    inits.append(numpy_helper.from_array(np.array([-1], np.int64), "flat"))
    nodes.append(helper.make_node("Reshape", ["bin_p", "flat"], ["is_face"], name="bin_flat"))
    nodes.append(helper.make_node("Identity", [dense("emb", 32)], ["embedding"]))
    nodes.append(helper.make_node("Identity", [dense("box", 4)], ["box"]))
    nodes.append(helper.make_node("Sigmoid", [dense("box01", 4)], ["box01"], name="box01_sigmoid"))
    for name, width in (("probs", ["N", 7]), ("is_face", ["N"]), ("embedding", ["N", 32]), ("box", ["N", 4]),
                        ("box01", ["N", 4])):
        output(name, width)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])
    graph = helper.make_graph(nodes, "heads", [x], outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _references(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in model.graph.output]
    x = (RNG.normal(size=(64, 8)) * 3).astype(np.float32)
    return dict(zip(names, session.run(names, {"x": x}), strict=True))


def test_the_graph_names_a_softmax_and_the_sigmoids_through_reshapes():
    finals = final_activation.of_onnx(_heads())
    assert {name: f.activation for name, f in finals.items()} == {"probs": "softmax", "is_face": "sigmoid",
                                                                  "box01": "sigmoid"}
    assert finals["probs"].where == "Softmax node 'prob'"
    assert finals["is_face"].where == "Sigmoid node 'bin_sigmoid'"  # through the Reshape


def test_each_head_gets_its_kind_and_where_it_came_from():
    model = _heads()
    rule = KindRule(finals=final_activation.of_onnx(model))
    decided = {o["name"]: (o["kind"], o["decided_by"]) for o in rule.explain(_references(model))}
    assert decided["probs"] == ("class", "graph: Softmax node 'prob'")
    assert decided["is_face"] == ("class", "graph: Sigmoid node 'bin_sigmoid'")  # one score: a binary decision
    assert decided["embedding"][0] == "embedding" and decided["embedding"][1].startswith("data: ")
    assert decided["box"][0] == "values" and decided["box"][1].startswith("data: ")
    # Several sigmoid scores may be squashed coordinates: the graph says nothing, the data decides.
    assert decided["box01"] == ("values", "data: a short vector with no entry standing out")


def test_without_the_graph_a_one_unit_sigmoid_is_values_and_the_override_still_wins():
    model = _heads()
    references = _references(model)
    plain = {o["name"]: o["kind"] for o in KindRule().explain(references)}
    assert plain["is_face"] == "values" and plain["probs"] == "class"
    rule = KindRule({"probs": "embedding"}, finals=final_activation.of_onnx(model))
    names = list(references)
    assert rule.of(names, list(references.values()))[:2] == ["embedding", "class"]
    assert rule.explain(references)[0] == {"name": "probs", "kind": "embedding", "decided_by": "--output-kind"}


def test_a_softmax_over_channels_says_nothing_of_the_last_axis():
    """An NCHW segmentation map normalised over axis 1: its last axis (width) is no class axis."""
    node = helper.make_node("Softmax", ["x"], ["y"], axis=1)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5, 8, 8])
    model = helper.make_model(helper.make_graph([node], "seg", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    assert final_activation.of_onnx(model) == {}
    last = helper.make_node("Softmax", ["x"], ["y"], axis=3)
    model.graph.ClearField("node")
    model.graph.node.append(last)
    assert final_activation.of_onnx(model)["y"].activation == "softmax"


def test_keras_layers_ending_in_softmax_or_sigmoid():
    dense = final_activation.of_layer("Dense", "head", {"units": 10, "activation": "softmax"})
    assert dense == final_activation.FinalActivation("softmax", "layer 'head' (activation softmax)")
    serialized = {"activation": {"module": "keras.activations", "class_name": "function",
                                 "config": {"name": "sigmoid"}}}
    assert final_activation.of_layer("Dense", "p", serialized).activation == "sigmoid"  # type: ignore[union-attr]
    assert final_activation.of_layer("Softmax", "s", {"axis": -1}).activation == "softmax"  # type: ignore[union-attr]
    assert final_activation.of_layer("Softmax", "s", {"axis": 1}) is None
    assert final_activation.of_layer("Dense", "emb", {"activation": "linear"}) is None
    assert final_activation.of_layer("Activation", "act", {"activation": "relu"}) is None
