"""Head pruning and layer dropping of a PyTorch-style ONNX encoder (tests/unit/bert_onnx.py), run with the real
onnxruntime: no TensorFlow, no exporter, no download."""

from __future__ import annotations

import numpy as np
import pytest

from edgekiln.compiler.errors import RecipeError
from edgekiln.compiler.evaluate.metrics import cosine
from edgekiln.compiler.graph.onnx_attention import attention_layers, float_params, run
from edgekiln.compiler.graph.onnx_heads import _sample_of_rows, prune_heads
from edgekiln.compiler.graph.onnx_layers import NO_HEAD, drop, encoder_blocks
from tests.unit.bert_onnx import DIM, FFN, HEADS, HIDDEN, LAYERS, tiny_bert, tokens

FEED = tokens(48, 10, seed=1)
OTHER_LENGTH = tokens(5, 15, seed=2)  # the pruned model keeps its symbolic axes


def _head_params(removed: int) -> int:
    """Q, K, V kernel columns and biases plus output-projection rows of `removed` heads (the output bias stays)."""
    return removed * (3 * (HIDDEN * DIM + DIM) + DIM * HIDDEN)


def _block_params() -> int:
    attention = 4 * (HIDDEN * HIDDEN + HIDDEN)
    feed_forward = HIDDEN * FFN + FFN + FFN * HIDDEN + HIDDEN
    return attention + feed_forward + 2 * 2 * HIDDEN  # and two LayerNorms


@pytest.fixture(scope="module")
def classifier():
    return tiny_bert(classifier=True)


def test_the_finder_reads_heads_dims_and_reshape_targets_of_both_export_styles(classifier):
    layers, blocked = attention_layers(classifier)
    assert blocked == {}
    assert [(a.heads, a.dim) for a in layers] == [(HEADS, DIM)] * LAYERS  # Concat chain (layer 0), constant (1)
    assert layers[0].x == "/embeddings/LayerNorm_output_0" and layers[1].output.endswith("dense/Add_output_0")


def test_torch_sdpa_exports_scaled_by_shape_arithmetic_are_recognised_and_pruned():
    """F.scaled_dot_product_attention as torch.onnx writes it: no Div after the scores, Q and K^T each multiplied
    by sqrt(1/sqrt(dim)) computed at run time from Shape(q), K^T by a second Transpose."""
    eager, sdpa = tiny_bert(classifier=True), tiny_bert(classifier=True, sdpa=True)
    assert np.allclose(run(sdpa, FEED)["logits"], run(eager, FEED)["logits"], atol=1e-4)  # the same model
    assert [(a.heads, a.dim) for a in attention_layers(sdpa)[0]] == [(HEADS, DIM)] * LAYERS
    pruned, facts = prune_heads(sdpa, 0.5, FEED, recover=True)
    assert float_params(pruned) == float_params(sdpa) - _head_params(LAYERS * HEADS // 2)
    assert [layer["kept"] for layer in facts["layers"]] == [layer["kept"] for layer in
                                                            prune_heads(eager, 0.5, FEED, recover=False)[1]["layers"]]
    assert run(pruned, OTHER_LENGTH)["logits"].shape == (5, 3)
    assert drop(sdpa, 1, FEED, recover=True)[1]["layers_after"] == 1


def test_projections_without_biases_prune_and_refit():
    plain = tiny_bert(classifier=True, bias=False)
    layers, _ = attention_layers(plain)
    assert [(a.biases, a.out_bias) for a in layers] == [((None, None, None), None)] * LAYERS
    pruned, facts = prune_heads(plain, 0.5, FEED, recover=True)
    assert float_params(pruned) == float_params(plain) - LAYERS * HEADS // 2 * (3 * HIDDEN * DIM + DIM * HIDDEN)
    assert facts["recovery"]["output_cosine_after"] > facts["recovery"]["output_cosine_before"]
    assert run(pruned, OTHER_LENGTH)["logits"].shape == (5, 3)


def test_a_layer_off_the_pattern_is_listed_with_its_reason_not_guessed(classifier):
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(classifier)
    key = next(n for n in model.graph.node if n.name == "/encoder/layer.1/attention/self/key/MatMul")
    key.input[0] = "/embeddings/LayerNorm_output_0"  # K reads another tensor than Q and V
    layers, blocked = attention_layers(model)
    assert [a.name for a in layers] == ["/encoder/layer.0/attention/self"]
    assert blocked == {"/encoder/layer.1/attention/self": "not self-attention (Q, K and V read different tensors)"}
    _, facts = prune_heads(model, 0.5, FEED, recover=False)
    assert [layer["layer"] for layer in facts["layers"]] == ["/encoder/layer.0/attention/self"]
    assert facts["blocked"][0]["reason"].startswith("not self-attention")
    with pytest.raises(RecipeError, match="cannot delimit the encoder blocks"):
        drop(model, 1, FEED, recover=True)


def test_ratio_zero_is_bit_identical(classifier):
    same, facts = prune_heads(classifier, 0.0, FEED, recover=True)
    assert np.array_equal(run(same, FEED)["logits"], run(classifier, FEED)["logits"])
    assert facts["params_after"] == facts["params_before"]
    assert [layer["heads_after"] for layer in facts["layers"]] == [HEADS] * LAYERS


def test_half_the_heads_leave_the_exact_parameter_count_and_any_sequence_length_runs(classifier):
    pruned, facts = prune_heads(classifier, 0.5, FEED, recover=False)
    assert [(layer["heads_before"], layer["heads_after"]) for layer in facts["layers"]] == [(HEADS, HEADS // 2)] * 2
    assert float_params(pruned) == float_params(classifier) - _head_params(LAYERS * HEADS // 2)
    assert facts["params_after"] == float_params(pruned)
    q = next(t for t in pruned.graph.initializer if t.name == "/encoder/layer.0/attention/self/query.weight")
    assert list(q.dims) == [HIDDEN, HEADS // 2 * DIM]
    assert run(pruned, OTHER_LENGTH)["logits"].shape == (5, 3)
    removed = [sorted(set(range(HEADS)) - set(layer["kept"])) for layer in facts["layers"]]
    for layer, gone in zip(facts["layers"], removed, strict=True):  # the lowest-scoring heads went
        assert max(layer["scores"][h] for h in gone) <= min(layer["scores"][h] for h in layer["kept"])


def test_the_refit_brings_the_output_closer_than_no_recovery(classifier):
    dropped, plain = prune_heads(classifier, 0.5, FEED, recover=False)
    refitted, fitted = prune_heads(classifier, 0.5, FEED, recover=True)
    assert plain["recovery"]["output_cosine_after"] == plain["recovery"]["output_cosine_before"] < 0.99
    assert fitted["recovery"]["output_cosine_after"] > plain["recovery"]["output_cosine_after"] + 0.05
    assert fitted["params_after"] == plain["params_after"]
    assert run(refitted, OTHER_LENGTH)["logits"].shape == (5, 3)
    chosen = fitted["recovery"]["layers"]  # per layer: the shrinkage chosen on held-out sentences
    assert len(chosen) == LAYERS and all(c["folds"] == 4 and c["heldout_mse"] <= c["heldout_mse_no_refit"]
                                         for c in chosen), chosen
    held = tokens(48, 10, seed=3)  # sentences the re-fit never saw come closer to the source as well
    reference = run(classifier, held)["logits"]
    assert cosine(reference, run(refitted, held)["logits"])["cosine_mean"] > \
        cosine(reference, run(dropped, held)["logits"])["cosine_mean"]


def test_each_real_token_row_keeps_its_sentence_so_folds_hold_out_whole_sentences():
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    context = np.zeros((3, 4, 6))
    assert list(_sample_of_rows(context, mask, 7)) == [0, 0, 1, 1, 1, 1, 2]
    assert list(_sample_of_rows(context, None, 12)) == [0] * 4 + [1] * 4 + [2] * 4


def test_drop_removes_exactly_the_last_blocks_and_refits_the_classifier(classifier):
    blocks = encoder_blocks(classifier)
    assert [b.exit for b in blocks] == ["/encoder/layer.0/output/LayerNorm_output_0",
                                        "/encoder/layer.1/output/LayerNorm_output_0"]
    same, facts = drop(classifier, 0, FEED, recover=True)
    assert np.array_equal(run(same, FEED)["logits"], run(classifier, FEED)["logits"])
    assert facts["params_after"] == facts["params_before"]
    plain, no_fit = drop(classifier, 1, FEED, recover=False)
    short, fitted = drop(classifier, 1, FEED, recover=True)
    assert (fitted["layers_before"], fitted["layers_after"]) == (2, 1)
    assert [b["kept"] for b in fitted["blocks"]] == [True, False]
    assert float_params(short) == float_params(classifier) - _block_params()
    assert len(attention_layers(short)[0]) == 1
    assert fitted["recovery"]["what"] == "least-squares re-fit of '/classifier/MatMul' (the first MatMul after " \
                                         "the encoder)"
    assert fitted["recovery"]["output_cosine_after"] > no_fit["recovery"]["output_cosine_after"] + 0.05
    assert run(short, OTHER_LENGTH)["logits"].shape == (5, 3)
    with pytest.raises(RecipeError, match="at least one stays"):
        drop(classifier, 2, FEED, recover=True)


def test_a_pure_embedding_model_drops_blocks_without_a_head_to_refit():
    embedder = tiny_bert(classifier=False)
    short, facts = drop(embedder, 1, FEED, recover=True)
    assert facts["recovery"]["method"] == "none" and facts["recovery"]["what"] == NO_HEAD
    assert run(short, OTHER_LENGTH)["sentence_embedding"].shape == (5, HIDDEN)
    pruned, heads = prune_heads(short, 0.5, FEED, recover=True)  # the order of a build: drop, then heads
    assert [layer["heads_after"] for layer in heads["layers"]] == [HEADS // 2]
    assert float_params(pruned) == float_params(short) - _head_params(HEADS // 2)


def test_a_model_without_self_attention_is_refused_in_one_line():
    from tests.unit.onnx_models import conv_net

    feed = {"x": np.random.default_rng(0).random((4, 3, 8, 8), dtype=np.float32)}
    with pytest.raises(RecipeError, match="found no attention layer to prune"):
        prune_heads(conv_net(), 0.5, feed, recover=True)
    with pytest.raises(RecipeError, match="needs a transformer encoder"):
        drop(conv_net(), 1, feed, recover=True)
