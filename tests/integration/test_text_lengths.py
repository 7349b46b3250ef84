"""Dynamic sequence length (issue 36 deliverable 3): a Keras encoder whose sequence axis is open ships as TFLite
with that axis open; the bundle runs each sentence at its bucket's length, one interpreter resized and allocated per
bucket, and embeds as the same model padded to the maximum does (the attention mask keeps padding out: equal in
exact arithmetic); the manifest and the summary give the latency at the median and the longest sentence length."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.conftest import SAMPLES
from tests.integration.conftest import run_runtime

pytestmark = pytest.mark.integration

BUCKETS = [8, 16, 24]


@pytest.fixture(scope="module")
def open_bundle(tmp_path_factory, cli):
    """Token ids [N, any length] -> token states [N, length, 32] (embedding, self-attention masked where the id is
    the padding id 0, LayerNorm), built from the sample's sentences at --seq-len 24 to float TFLite."""
    from edgekiln.compiler.tf_env import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(3)
    root = tmp_path_factory.mktemp("open-length")
    ids = keras.Input((None,), dtype="int32", name="input_ids")
    x = keras.layers.Embedding(400, 32, name="tokens")(ids)
    mask = keras.ops.expand_dims(keras.ops.not_equal(ids, 0), 1)
    attended = keras.layers.MultiHeadAttention(2, 16, name="attention")(x, x, attention_mask=mask)
    keras.Model(ids, keras.layers.LayerNormalization(name="norm")(x + attended)).save(root / "open.keras")
    done = cli("build", root / "open.keras", "-t", "rpi4", "--text", SAMPLES / "intent_calib.txt", "--tokenizer",
               SAMPLES / "intent_tokenizer.json", "--eval", SAMPLES / "intent_eval.txt", "--seq-len", "24",
               "--format", "tflite", "--quantize", "none", "--runs", "5", "--golden-samples", "4", "-o", root / "b")
    return {"done": done, "out": root / "b", "root": root}


def test_an_open_sequence_axis_ships_with_buckets_and_the_latency_at_the_median_and_longest_length(open_bundle):
    done = open_bundle["done"]
    assert done.exit_code == 0, done.output
    text = json.loads((open_bundle["out"] / "manifest.json").read_text())["text"]
    by_length = text["latency_by_length"]
    assert text["buckets"] == BUCKETS and by_length["sentences"] == 640
    # the intent sentences: 10 tokens at the median, 19 the longest ([CLS] and [SEP] counted)
    assert (by_length["median_tokens"], by_length["median_bucket"]) == (10, 16)
    assert (by_length["longest_tokens"], by_length["longest_bucket"]) == (19, 24)
    assert all(by_length[k] > 0 for k in ("median_p50_ms", "longest_p50_ms", "padded_p50_ms"))
    assert "sentences at their own length (buckets [8, 16, 24])" in " ".join(done.output.split())
    validated = run_runtime(open_bundle["out"], "validate", "--json")
    assert validated.returncode == 0 and json.loads(validated.stdout)["passed"], validated.stdout


def test_sentences_at_their_bucket_length_embed_as_padded_to_the_maximum(open_bundle):
    from edgekiln.runtime import load
    from edgekiln.runtime.text import bucket_lengths

    assert open_bundle["done"].exit_code == 0, open_bundle["done"].output
    padded_dir = open_bundle["root"] / "padded"
    shutil.copytree(open_bundle["out"], padded_dir)
    manifest = json.loads((padded_dir / "manifest.json").read_text())
    del manifest["text"]["buckets"]
    (padded_dir / "manifest.json").write_text(json.dumps(manifest))
    sentences = [line.split("\t", 1)[1] for line in (SAMPLES / "intent_eval.txt").read_text().splitlines()][::40]
    padded, bucketed = load(padded_dir), load(open_bundle["out"])
    assert bucketed.inputs[0].shape == (-1, -1)  # the sequence axis is open
    want, got = padded.embed(sentences), bucketed.embed(sentences)
    assert got.shape == want.shape == (16, 32)
    assert np.allclose(got, want, atol=1e-5), np.abs(got - want).max()
    used = set(bucket_lengths(bucketed._text.feeds(sentences, ["input_ids"])[1], BUCKETS))  # noqa: SLF001
    assert len(used) >= 2 and set(bucketed._lengths) == used  # noqa: SLF001  one interpreter per bucket
    assert all(m.backend._interp.get_input_details()[0]["shape"][1] == n  # noqa: SLF001
               for n, m in bucketed._lengths.items())  # noqa: SLF001
    assert set(padded._lengths) == {24}  # noqa: SLF001  no buckets: padded to seq_len
