"""The bundle's text path without an interpreter (runtime/text.py): pooling and normalization."""

from __future__ import annotations

import numpy as np

from edgekiln.runtime.text import normalized, pool


def test_mean_pooling_is_sentence_transformers_mean_over_the_attention_mask():
    states = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]])
    # sentence-transformers' Pooling (mean): sum(states * mask) / clamp(sum(mask), min=1e-9), per sentence
    expected = np.stack([states[0, :2].mean(0), states[1].mean(0)])
    assert np.allclose(pool(states, mask, "mean"), expected)
    assert not np.allclose(pool(states, mask, "mean")[0], states[0].mean(0))  # padding is left out


def test_cls_pooling_takes_the_first_token_and_sentence_vectors_pass_through():
    states = np.random.default_rng(0).normal(size=(3, 5, 4)).astype(np.float32)
    mask = np.ones((3, 5), np.int64)
    assert np.array_equal(pool(states, mask, "cls"), states[:, 0])
    assert np.array_equal(pool(states[:, 0], mask, "mean"), states[:, 0])  # already one vector per sentence


def test_normalized_rows_have_length_one_and_a_zero_row_stays_zero():
    rows = normalized(np.array([[3.0, 4.0], [0.0, 0.0]], np.float32))
    assert np.allclose(rows, [[0.6, 0.8], [0.0, 0.0]])


def test_a_sentence_runs_at_its_bucket_length_the_smallest_holding_its_tokens():
    from edgekiln.runtime.text import bucket_lengths

    mask = np.array([[1, 1, 1, 0, 0, 0, 0, 0], [1] * 5 + [0] * 3, [1] * 8])
    assert bucket_lengths(mask, [8, 4, 2]) == [4, 8, 8]
    assert bucket_lengths(mask, [2]) == [2, 2, 2]  # longer than every bucket: the last (the tokenizer cut it)


def _bert_bundle(root, buckets: list[int] | None):
    """A bundle of the tiny BERT (tests/unit/bert_onnx.py: symbolic batch and sequence axes, masked mean output)
    that takes text: a WordPiece tokenizer over its 60 ids, padded to 32."""
    import hashlib
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    from tests.unit.bert_onnx import VOCAB, tiny_bert

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, **{f"w{k}": k for k in range(4, VOCAB)}}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                             special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer.save(str(root / "tokenizer.json"))
    model = tiny_bert().SerializeToString()
    (root / "model.onnx").write_bytes(model)
    text = {"tokenizer": "tokenizer.json", "seq_len": 32, "pad_id": 0, "pad_token": "[PAD]", "output": 0,
            "inputs": {"input_ids": "ids", "attention_mask": "mask"}, "pooling": "mean", "normalize": True,
            **({"buckets": buckets} if buckets else {})}
    manifest = {"model": {"file": "model.onnx", "format": "onnx", "sha256": hashlib.sha256(model).hexdigest()},
                "golden": {"file": "golden.npz", "atol": 0, "rtol": 0}, "text": text}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_embeddings_at_bucket_length_equal_the_ones_padded_to_the_maximum(tmp_path):
    from edgekiln.runtime import load
    from edgekiln.runtime.text import bucket_lengths

    sentences = ["w5 w6", "w7 w8 w9 w10 w11", " ".join(f"w{4 + k}" for k in range(20)), "w4", "w12 w50 w13"]
    (tmp_path / "padded").mkdir()
    (tmp_path / "bucketed").mkdir()
    padded = load(_bert_bundle(tmp_path / "padded", None)).embed(sentences)
    model = load(_bert_bundle(tmp_path / "bucketed", [4, 8, 16, 32]))
    bucketed = model.embed(sentences)
    assert bucketed.shape == padded.shape == (5, 32)
    assert np.allclose(bucketed, padded, atol=1e-5), np.abs(bucketed - padded).max()
    mask = model._text.feeds(sentences, ["input_ids", "attention_mask"])[1]  # noqa: SLF001
    assert mask.shape[1] == 32 and bucket_lengths(mask, [4, 8, 16, 32]) == [4, 8, 32, 4, 8]  # [CLS] words [SEP]
