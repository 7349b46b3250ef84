"""Dynamic sequence length in the bundle runtime (issue 36 deliverable 3): a TFLite encoder whose sequence axis is
open runs each sentence at its bucket's length, one interpreter resized and allocated per bucket, and embeds as the
same model padded to the maximum does (the attention mask keeps padding out: equal in exact arithmetic)."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

from tests.conftest import SAMPLES

pytestmark = pytest.mark.integration

BUCKETS = [8, 16, 24]


@pytest.fixture(scope="module")
def open_encoder(tmp_path_factory):
    """Token ids [N, any length] -> token states [N, length, 32]: embedding, self-attention masked where the id is
    the padding id 0, LayerNorm; converted to float TFLite with its sequence axis left open."""
    from edgekiln.compiler.tf_env import import_keras, import_tf, quiet_fds

    keras = import_keras()
    keras.utils.set_random_seed(3)
    ids = keras.Input((None,), dtype="int32", name="input_ids")
    x = keras.layers.Embedding(400, 32, name="tokens")(ids)
    mask = keras.ops.expand_dims(keras.ops.not_equal(ids, 0), 1)
    attended = keras.layers.MultiHeadAttention(2, 16, name="attention")(x, x, attention_mask=mask)
    model = keras.Model(ids, keras.layers.LayerNormalization(name="norm")(x + attended))
    with quiet_fds():
        return import_tf().lite.TFLiteConverter.from_keras_model(model).convert()


def _bundle(root, model: bytes, buckets: list[int] | None):
    root.mkdir()
    (root / "model.tflite").write_bytes(model)
    shutil.copy(SAMPLES / "intent_tokenizer.json", root / "tokenizer.json")
    text = {"tokenizer": "tokenizer.json", "seq_len": 24, "pad_id": 0, "pad_token": "[PAD]", "output": 0,
            "inputs": {"input_ids": "ids"}, "pooling": "mean", "normalize": True,
            **({"buckets": buckets} if buckets else {})}
    manifest = {"model": {"file": "model.tflite", "format": "tflite", "sha256": hashlib.sha256(model).hexdigest()},
                "golden": {"file": "golden.npz", "atol": 0, "rtol": 0}, "text": text}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_tflite_sentences_at_their_bucket_length_embed_as_padded_to_the_maximum(open_encoder, tmp_path):
    from edgekiln.runtime import load
    from edgekiln.runtime.text import bucket_lengths

    sentences = [line.split("\t", 1)[1] for line in (SAMPLES / "intent_eval.txt").read_text().splitlines()][::40]
    padded = load(_bundle(tmp_path / "padded", open_encoder, None))
    bucketed = load(_bundle(tmp_path / "bucketed", open_encoder, BUCKETS))
    assert bucketed.inputs[0].shape == (-1, -1)  # the sequence axis is open
    want, got = padded.embed(sentences), bucketed.embed(sentences)
    assert got.shape == want.shape == (16, 32)
    assert np.allclose(got, want, atol=1e-5), np.abs(got - want).max()
    used = set(bucket_lengths(bucketed._text.feeds(sentences, ["input_ids"])[1], BUCKETS))  # noqa: SLF001
    assert len(used) >= 2 and set(bucketed._lengths) == used  # noqa: SLF001  one interpreter per bucket
    assert all(m.backend._interp.get_input_details()[0]["shape"][1] == n  # noqa: SLF001
               for n, m in bucketed._lengths.items())  # noqa: SLF001
    assert set(padded._lengths) == {24}  # noqa: SLF001  no buckets: padded to seq_len
