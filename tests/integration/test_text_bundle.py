"""A sentence encoder a user can ship (issue 36): the sample transformer's token states (its last block, mean-pooled
by the bundle), built with --vocab-from auto: a smaller bundle that takes text, embeds it from the command line
close to the source model's embedding, and validates from text."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import SAMPLES
from tests.integration.conftest import run_runtime

pytestmark = pytest.mark.integration

TOKENIZER = SAMPLES / "intent_tokenizer.json"
INSIDE = ["turn on the lights in the kitchen", "set a timer for ten minutes"]  # words of the calibration corpus


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """The sample intent encoder cut after its last block: [N, 24, 64] token states, as a sentence encoder has."""
    from edgekiln.compiler.tf_env import import_keras

    keras = import_keras()
    root = tmp_path_factory.mktemp("states")
    source = keras.models.load_model(SAMPLES / "intent_encoder.keras")
    model = keras.Model(source.input, source.get_layer("block3_ffn_norm").output)
    model.save(root / "states.keras")
    unseen = [line.split("\t", 1)[1] for line in (SAMPLES / "intent_eval.txt").read_text().splitlines()]
    (root / "eval.txt").write_text("".join(f"{s}\n" for s in unseen[:80]))
    return {"model": model, "path": root / "states.keras", "eval": root / "eval.txt", "root": root,
            "unseen": unseen[80:100]}


def _source_embeddings(model, sentences: list[str]) -> np.ndarray:
    """What a sentence-transformers user computes from the source: its tokenizer, mean over the mask, L2."""
    from tokenizers import Tokenizer

    encoded = Tokenizer.from_file(str(TOKENIZER)).encode_batch(sentences)
    ids, mask = (np.array([getattr(e, a) for e in encoded], np.int32) for a in ("ids", "attention_mask"))
    states = model.predict(ids, verbose=0)
    pooled = (states * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def _float_tflite_bytes(model) -> int:
    from edgekiln.compiler.tf_env import import_tf, quiet_fds

    with quiet_fds():
        return len(import_tf().lite.TFLiteConverter.from_keras_model(model).convert())


def test_vocab_pruned_bundle_is_smaller_embeds_text_like_the_source_and_validates_from_text(cli, encoder):
    out = encoder["root"] / "bundle"
    done = cli("build", encoder["path"], "-t", "rpi4", "--text", SAMPLES / "intent_calib.txt", "--tokenizer",
               TOKENIZER, "--eval", encoder["eval"], "--vocab-from", "auto", "--format", "tflite", "--quantize",
               "none", "--runs", "2", "--golden-samples", "4", "-o", out)
    assert done.exit_code == 0, done.output
    m = json.loads((out / "manifest.json").read_text())
    v = m["vocabulary"]
    assert v["rows_before"] == 400 and v["rows_after"] < 300 and v["coverage_corpus"] == 1.0
    assert v["params_before"] - v["params_after"] == (v["rows_before"] - v["rows_after"]) * 64  # rows x width
    assert v["cosine_corpus"]["mean"] > 0.9999 and v["cosine_unseen"]["sentences"] == 80
    assert m["model"]["bytes"] < _float_tflite_bytes(encoder["model"]) - 0.9 * (v["embedding_bytes_before"]
                                                                             - v["embedding_bytes_after"])
    assert m["text"]["pooling"] == "mean" and m["text"]["normalize"] and (out / "tokenizer.json").is_file()
    assert "tokenizers==0.23.3" in (out / "requirements.txt").read_text().split()

    embedded = run_runtime(out, "embed", *INSIDE, *encoder["unseen"])
    assert embedded.returncode == 0, embedded.stderr
    got = np.array(json.loads(embedded.stdout))
    cosines = np.sum(got * _source_embeddings(encoder["model"], INSIDE + encoder["unseen"]), axis=1)
    assert got.shape == (22, 64) and np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert cosines[:2].min() > 0.9999  # sentences of corpus words: the same tokens, the same embedding
    assert cosines[2:].mean() >= 0.95, cosines  # unseen sentences: some words spelled in pieces or [UNK]

    validated = run_runtime(out, "validate", "--json")
    report = json.loads(validated.stdout)
    assert validated.returncode == 0 and report["passed"] and len(report["samples"]) == 8  # 4 token arrays + 4 texts
