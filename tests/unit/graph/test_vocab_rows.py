"""The word embedding's rows cut in an ONNX encoder as torch.onnx exports it (compiler/graph/vocab_rows.py)."""

from __future__ import annotations

import numpy as np
import pytest

from edgekiln.compiler.errors import RecipeError
from edgekiln.compiler.graph.onnx_attention import run
from edgekiln.compiler.graph.vocab_rows import onnx_cut
from tests.unit.bert_onnx import HIDDEN, VOCAB, tiny_bert, tokens


def test_cut_rows_with_remapped_ids_give_bit_identical_outputs_and_fewer_parameters():
    model = tiny_bert()
    feed = tokens(16, 10, seed=3)
    kept = sorted({0, *np.unique(feed["input_ids"]).tolist()})  # [PAD] and every id the sentences use
    cut, width, rows = onnx_cut(model, VOCAB, "input_ids", kept)
    assert (width, rows) == (HIDDEN, VOCAB) and len(kept) < VOCAB
    new_ids = {old: new for new, old in enumerate(kept)}
    remapped = {**feed, "input_ids": np.vectorize(new_ids.__getitem__)(feed["input_ids"])}
    before = run(model, feed)["sentence_embedding"]
    after = run(cut, remapped)["sentence_embedding"]
    assert np.array_equal(before, after)
    size = {t.name: int(np.prod(t.dims)) for t in model.graph.initializer}
    cut_size = {t.name: int(np.prod(t.dims)) for t in cut.graph.initializer}
    assert sum(size.values()) - sum(cut_size.values()) == (VOCAB - len(kept)) * HIDDEN  # only the table's rows
    assert len(model.graph.initializer) == len(cut.graph.initializer)  # the source model is left as it was


def test_a_tokenizer_larger_than_every_table_is_refused_in_one_line():
    with pytest.raises(RecipeError, match="needs one embedding table .* gathered at 'input_ids'; the model has 0"):
        onnx_cut(tiny_bert(), VOCAB + 1, "input_ids", [0, 1])
