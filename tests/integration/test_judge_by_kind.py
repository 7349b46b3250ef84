"""Builds judged without labels, each output by its kind (issue: 'accurate enough' without labels): an embedding
model is judged by cosine without --embedding, and a classifier that never flips is not held to an SQNR floor.
Which row ships is decided by timing, so each test checks the rule on the table it got."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekiln.compiler.pipeline import build
from edgekiln.compiler.recipe import Recipe
from tests.choice_rule import assert_choice_obeys_rule, competing_rows, recorded_criterion

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _embedder(seed: int = 0) -> onnx.ModelProto:
    """x [N, 32] -> Gemm 32->64 -> Relu -> Gemm 64->48: a 48-d embedding (no softmax, nothing stands out)."""
    rng = np.random.default_rng(seed)
    tensors = {"w1": rng.normal(0, 0.3, (64, 32)), "b1": np.zeros(64), "w2": rng.normal(0, 0.3, (48, 64)),
               "b2": np.zeros(48)}
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "embedder", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 48])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in tensors.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _rows(manifest: dict) -> dict[str, dict]:
    return {r["name"]: r for r in manifest["quantization"]["candidates"]}


def test_an_embedding_builds_int8_without_the_flag_judged_by_cosine(tmp_path):
    (tmp_path / "e.onnx").write_bytes(_embedder().SerializeToString())
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(1).normal(size=(100, 32)).astype(np.float32))
    result = build(Recipe(source=str(tmp_path / "e.onnx"), target="rpi4", calib=str(tmp_path / "calib.npz"),
                          output=str(tmp_path / "bundle"), bench_runs=10, format="onnx"))
    m = json.loads((result.output / "manifest.json").read_text())
    assert m["fidelity"]["per_output"][0]["kind"] == "embedding" and "top1_agreement" not in m["fidelity"]
    assert m["quantization"]["output_kinds"] == [
        {"name": "y", "kind": "embedding", "decided_by": "data: a long vector with no entry standing out"}]
    rows = _rows(m)
    assert all(r["kinds"] == ["embedding"] and r["agreement"] is None for r in rows.values()), rows
    rule = recorded_criterion(m["quantization"])
    int8 = [r for r in competing_rows(m["quantization"]) if r.variant.quantize.value == "int8"]
    assert int8, rows
    for row in int8:  # judged by cosine alone: within the default floor means eligible
        low, high = rows[row.name]["intervals"]["cosine_mean"]
        assert rule.meets(row.judged) == (high >= 0.99), rows[row.name]
        assert "top-1" not in rows[row.name]["verdict"]
    assert any(rule.meets(r.judged) for r in int8), rows  # a 2-layer MLP keeps its direction in int8
    assert_choice_obeys_rule(m)


def test_a_classifier_that_never_flips_on_100_samples_is_eligible_in_int8(tmp_path):
    data = np.load(ROOT / "sample_models" / "mnist_calib.npz")
    np.savez(tmp_path / "calib.npz", x=data["x"][:100])
    result = build(Recipe(source=str(ROOT / "sample_models" / "mnist_cnn.keras"), target="rpi4",
                          calib=str(tmp_path / "calib.npz"), output=str(tmp_path / "bundle"), bench_runs=10))
    m = json.loads((result.output / "manifest.json").read_text())
    assert m["fidelity"]["per_output"][0]["kind"] == "class"
    rows = _rows(m)
    rule = recorded_criterion(m["quantization"])
    judged = competing_rows(m["quantization"])
    assert judged
    for row in judged:
        recorded = rows[row.name]
        assert recorded["kinds"] == ["class"] and recorded["samples"] == m["fidelity"]["samples"]
        assert rule.meets(row.judged) or recorded["flips"] > 0, recorded  # no class change: eligible, any SQNR
    assert any(r["flips"] == 0 and r["quantize"] == "int8" for r in rows.values()), rows
    assert_choice_obeys_rule(m)


@pytest.mark.parametrize("as_dict", [False, True])
def test_keras_heads_are_named_as_the_export_names_them(tmp_path, as_dict):
    """A Keras model's final activations, by the SavedModel's output names (output_0... or the dict's keys)."""
    from edgekiln.compiler.evaluate import final_activation
    from edgekiln.compiler.graph import keras_graph
    from edgekiln.compiler.tf_env import import_keras

    keras = import_keras()
    x = keras.Input((8,))
    heads = {"probs": keras.layers.Dense(5, activation="softmax", name="cls")(x),
             "face": keras.layers.Dense(1, activation="sigmoid", name="bin")(x),
             "box": keras.layers.Dense(4, name="box")(x)}
    model = keras.Model(x, heads if as_dict else list(heads.values()))
    graph = keras_graph.from_model(model, tmp_path / "sm", "keras", "heads")
    finals = final_activation.final_activations(graph)
    names = ("probs", "face") if as_dict else ("output_0", "output_1")
    assert {n: f.activation for n, f in finals.items()} == dict(zip(names, ("softmax", "sigmoid"), strict=True))
    assert set(finals) <= set(graph.output_names)
    assert finals[names[1]].where == "layer 'bin' (activation sigmoid)"
