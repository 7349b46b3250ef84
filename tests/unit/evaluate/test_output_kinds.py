"""Output kinds inferred from a source's outputs on constructed data, and the metric each kind is judged by."""

from __future__ import annotations

import numpy as np
import pytest

from edgekiln.compiler.evaluate import metrics, output_kinds

RNG = np.random.default_rng(0)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _logits(n: int = 64, classes: int = 10) -> np.ndarray:
    """A trained classifier's logits: one class well above the rest in each row."""
    z = RNG.normal(size=(n, classes))
    z[np.arange(n), RNG.integers(0, classes, n)] += 6.0
    return z.astype(np.float32)


def test_a_softmax_head_is_a_class_output():
    assert output_kinds.infer(_softmax(RNG.normal(size=(64, 7))).astype(np.float32)) == "class"


def test_peaked_logits_are_a_class_output():
    assert output_kinds.infer(_logits()) == "class"
    assert output_kinds.infer(RNG.normal(size=(64, 2)).astype(np.float32)) == "class"  # two logits: binary


def test_a_2d_embedding_is_an_embedding():
    assert output_kinds.infer(RNG.normal(size=(64, 96)).astype(np.float32)) == "embedding"


def test_l2_normalised_rows_are_an_embedding_even_when_few():
    rows = RNG.normal(size=(64, 4))
    assert output_kinds.infer((rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)) == "embedding"


def test_token_states_are_an_embedding_and_a_small_feature_map_values():
    assert output_kinds.infer(RNG.normal(size=(8, 16, 32)).astype(np.float32)) == "embedding"
    assert output_kinds.infer(RNG.normal(size=(8, 16, 4)).astype(np.float32)) == "values"


def test_a_box_head_and_a_scalar_regression_are_values():
    assert output_kinds.infer(RNG.normal(size=(64, 4)).astype(np.float32) * 100) == "values"
    assert output_kinds.infer(RNG.normal(size=(64, 1)).astype(np.float32)) == "values"
    assert output_kinds.infer(RNG.normal(size=(64,)).astype(np.float32)) == "values"


def test_a_multi_output_model_judges_each_output_by_its_kind():
    """A detector-like model: class scores, an embedding and boxes; int8-like noise on the boxes only."""
    scores, embedding, boxes = _softmax(_logits()), RNG.normal(size=(64, 96)), RNG.normal(size=(64, 1)) * 50
    noisy_boxes = boxes + RNG.normal(size=boxes.shape) * 5  # SQNR ~ 20 dB
    f = metrics.fidelity([scores, embedding, boxes], [scores, embedding, noisy_boxes], ["scores", "emb", "box"])
    assert [o["kind"] for o in f["per_output"]] == ["class", "embedding", "values"]
    assert [o["measure"] for o in f["per_output"]] == ["top-1 agreement", "cosine", "SQNR dB"]
    assert f["top1_agreement"] == 1.0 and f["flips"] == 0 and f["cosine_mean"] == pytest.approx(1.0)
    assert f["values_sqnr_db"] == f["per_output"][2]["sqnr_db"] and 15 < f["values_sqnr_db"] < 25
    low, high = f["intervals"]["values_sqnr_db"]
    assert low <= f["values_sqnr_db"] <= high


def test_overrides_and_embedding_shorthand():
    refs = {"scores": _logits(), "box": RNG.normal(size=(64, 1))}
    assert output_kinds.kinds_of(refs, {}, embedding=False) == {"scores": "class", "box": "values"}
    assert output_kinds.kinds_of(refs, {}, embedding=True) == {"scores": "embedding", "box": "values"}
    assert output_kinds.kinds_of(refs, {"box": "embedding"}, embedding=False)["box"] == "embedding"
    with pytest.raises(ValueError, match="nope, which the model does not output"):
        output_kinds.kinds_of(refs, {"nope": "class"}, embedding=False)
    assert output_kinds.parse(["scores=class", "box=values"]) == {"scores": "class", "box": "values"}
    with pytest.raises(ValueError, match="not NAME=KIND"):
        output_kinds.parse(["scores=probabilities"])


def test_a_single_score_judged_as_a_class_counts_the_samples_whose_side_of_the_threshold_changes():
    """--output-kind NAME=class on a one-unit sigmoid head: the decision is score > 0.5, flips counted with their
    interval (SQNR would call a sigmoid that moves 0.49 -> 0.51 nearly perfect)."""
    ref = np.array([[0.1], [0.49], [0.9], [0.7]], np.float32)
    out = np.array([[0.12], [0.51], [0.88], [0.69]], np.float32)
    one = metrics.fidelity([ref], [out], ["p"], ["class"])["per_output"][0]
    assert one["flips"] == 1 and one["top1_agreement"] == 0.75 and one["measure"] == "decision agreement (score > 0.5)"
    low, high = one["interval"]
    assert low < 0.75 < high <= 1.0
    logits = metrics.fidelity([ref - 0.5], [out - 0.5], ["p"], ["class"])["per_output"][0]
    assert logits["flips"] == 1 and logits["measure"] == "decision agreement (score > 0)"
