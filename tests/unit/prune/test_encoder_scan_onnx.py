"""prune-scan on a PyTorch-style ONNX encoder (tests/unit/bert_onnx.py): every head masked alone and every block
skipped alone, run with the real onnxruntime; the figures checked against models rewired here, by hand."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from edgekiln.compiler.commands.prune_scan import scan_onnx_encoder
from edgekiln.compiler.errors import DataError
from edgekiln.compiler.evaluate.metrics import cosine
from edgekiln.compiler.graph.onnx_attention import attention_layers, float_params
from edgekiln.compiler.graph.onnx_heads import prune_heads
from edgekiln.compiler.graph.onnx_layers import drop
from edgekiln.compiler.model_inputs import Dataset
from tests.unit.bert_onnx import DIM, HEADS, HIDDEN, LAYERS, tiny_bert, tokens

FEED = tokens(40, 10, seed=5)


def _run(model: onnx.ModelProto, output: int = 0) -> np.ndarray:
    """The model's output `output` on FEED, straight from an onnxruntime session."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, FEED)[output]


def _head_zeroed(model: onnx.ModelProto, layer: int, head: int) -> onnx.ModelProto:
    """A copy with rows [head*DIM, (head+1)*DIM) of attention layer `layer`'s output-projection weight zeroed."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    name = attention_layers(model)[0][layer].out_weight
    tensor = next(t for t in copy.graph.initializer if t.name == name)
    value = numpy_helper.to_array(tensor).copy()
    value[head * DIM:(head + 1) * DIM] = 0.0
    tensor.CopyFrom(numpy_helper.from_array(value, name))
    return copy


def _rewired(model: onnx.ModelProto, block: int) -> onnx.ModelProto:
    """A copy where whatever read block `block`'s output (the next block's attention input) reads its input."""
    layers = attention_layers(model)[0]
    entry, exit_ = layers[block].x, layers[block + 1].x
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for node in copy.graph.node:
        for k, name in enumerate(node.input):
            if name == exit_:
                node.input[k] = entry
    return copy


def _with_token_states(model: onnx.ModelProto) -> onnx.ModelProto:
    """The encoder's last hidden state (per token) added as its first output, as sentence-transformers exports."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    last = next(n for n in reversed(copy.graph.node) if n.op_type == "LayerNormalization").output[0]
    states = onnx.helper.make_tensor_value_info(last, onnx.TensorProto.FLOAT, ["batch", "sequence", HIDDEN])
    copy.graph.output.insert(0, states)
    return copy


@pytest.fixture(scope="module")
def embedder() -> onnx.ModelProto:
    return tiny_bert()


def test_one_row_per_head_and_per_block_and_the_source_is_untouched(embedder):
    before = embedder.SerializeToString()
    scan = scan_onnx_encoder(embedder, Dataset(FEED, None, "tokens"))
    assert embedder.SerializeToString() == before
    names = [a.name for a in attention_layers(embedder)[0]]
    assert [(r.layer, r.index) for r in scan.heads] == [(n, h) for n in names for h in range(HEADS)]
    assert [(r.layer, r.index) for r in scan.blocks] == [(n, k) for k, n in enumerate(names)]
    assert scan.reference is None and scan.samples == len(FEED["input_ids"]) and scan.metric == "cosine"
    assert {r.params for r in scan.heads} == {3 * (HIDDEN * DIM + DIM) + DIM * HIDDEN}
    short, _ = drop(embedder, 1, FEED, recover=False)
    assert scan.blocks[-1].params == float_params(embedder) - float_params(short)
    # The scores are the criterion --prune-heads removes heads by, on the same samples.
    _, facts = prune_heads(embedder, 0.5, FEED, recover=False)
    assert [r.score for r in scan.heads] == pytest.approx([s for layer in facts["layers"] for s in layer["scores"]],
                                                          rel=1e-5)


def test_a_masked_head_is_the_model_with_its_output_rows_zeroed(embedder):
    scan = scan_onnx_encoder(embedder, Dataset(FEED, None, "tokens"))
    reference = _run(embedder)
    for layer, head in ((0, 1), (1, 3)):
        row = scan.heads[layer * HEADS + head]
        expected = cosine(reference, _run(_head_zeroed(embedder, layer, head)))
        assert (row.quality.cosine_mean, row.quality.cosine_p5) == pytest.approx(
            (expected["cosine_mean"], expected["cosine_p5"]),
                                                                 abs=1e-5)
        assert row.quality.cosine_mean < 0.999  # the head mattered: a wrong mask would not land on the same figure


def test_a_skipped_block_is_the_hand_rewired_graph_and_the_last_is_drop_1(embedder):
    scan = scan_onnx_encoder(embedder, Dataset(FEED, None, "tokens"))
    reference = _run(embedder)
    first = cosine(reference, _run(_rewired(embedder, 0)))
    assert (scan.blocks[0].quality.cosine_mean, scan.blocks[0].quality.cosine_p5) == pytest.approx(
        (first["cosine_mean"], first["cosine_p5"]), abs=1e-5)
    short, _ = drop(embedder, LAYERS - 1, FEED, recover=False)
    last = cosine(reference, _run(short))
    assert (scan.blocks[-1].quality.cosine_mean, scan.blocks[-1].quality.cosine_p5) == pytest.approx(
        (last["cosine_mean"], last["cosine_p5"]), abs=1e-5)
    assert first["cosine_mean"] != pytest.approx(last["cosine_mean"], abs=1e-3)


def test_per_token_outputs_are_judged_on_real_tokens_only(embedder):
    states = _with_token_states(embedder)
    scan = scan_onnx_encoder(states, Dataset(FEED, None, "tokens"))
    real = FEED["attention_mask"].astype(bool)
    assert not real.all()  # padded tokens present: judging them too would change the figures
    reference = _run(states)[real]
    expected = cosine(reference, _run(_head_zeroed(states, 0, 2))[real])
    assert scan.heads[2].quality.cosine_mean == pytest.approx(expected["cosine_mean"], abs=1e-5)
    with pytest.raises(DataError, match="per token"):
        scan_onnx_encoder(states, Dataset(FEED, np.zeros(len(real), np.int64), "tokens"))


def test_labels_give_the_accuracy_drop_of_the_masked_model():
    classifier = tiny_bert(classifier=True)
    labels = _run(classifier).argmax(1)  # the unmasked model is right on every sample
    scan = scan_onnx_encoder(classifier, Dataset(FEED, labels, "tokens"))
    assert scan.reference == 100.0 and scan.metric == "accuracy"
    masked = _run(_head_zeroed(classifier, 1, 0)).argmax(1)
    assert scan.heads[HEADS].quality.accuracy_drop == pytest.approx(100.0 - 100 * np.mean(masked == labels), abs=1e-3)
    assert any(r.quality.accuracy_drop > 0 for r in (*scan.heads, *scan.blocks))
