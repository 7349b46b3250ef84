"""A sentence encoder a user can ship (issue 36): `make demo-text` builds the sample encoder's token states
(sample_models/intent_states.keras, mean-pooled by the bundle) with --vocab-from auto: a smaller bundle that takes
text, embeds it from the command line close to the source model's embedding, and validates from text."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, SAMPLES
from tests.integration.conftest import run_runtime

pytestmark = pytest.mark.integration

TOKENIZER = SAMPLES / "intent_tokenizer.json"
INSIDE = ["turn on the lights in the kitchen", "set a timer for ten minutes"]  # words of the calibration corpus
QUICK = "--format tflite --quantize none --runs 2 --golden-samples 4"  # the demo's steps, a float build


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    """`make demo-text` as a user runs it (this interpreter's environment standing in for .venv: `-o install`)."""
    out = tmp_path_factory.mktemp("demo-text") / "bundle"
    done = subprocess.run(["make", "-s", "-o", "install", "demo-text", f"BIN={Path(sys.executable).parent}",
                           f"TEXT_OUT={out}", f"TEXT_FLAGS={QUICK}"], cwd=ROOT, capture_output=True, text=True)
    return {"done": done, "out": out}


def _source_embeddings(sentences: list[str]) -> np.ndarray:
    """What a sentence-transformers user computes from the source: its tokenizer, mean over the mask, L2."""
    from tokenizers import Tokenizer

    from edgekiln.compiler.tf_env import import_keras

    model = import_keras().models.load_model(SAMPLES / "intent_states.keras")
    encoded = Tokenizer.from_file(str(TOKENIZER)).encode_batch(sentences)
    ids, mask = (np.array([getattr(e, a) for e in encoded], np.int32) for a in ("ids", "attention_mask"))
    states = model.predict(ids, verbose=0)
    pooled = (states * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def _float_tflite_bytes() -> int:
    from edgekiln.compiler.tf_env import import_keras, import_tf, quiet_fds

    model = import_keras().models.load_model(SAMPLES / "intent_states.keras")
    with quiet_fds():
        return len(import_tf().lite.TFLiteConverter.from_keras_model(model).convert())


def test_make_demo_text_ships_a_vocab_pruned_bundle_that_embeds_from_the_command_line_and_validates(demo):
    done = demo["done"]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    vectors = np.array(json.loads(next(line for line in done.stdout.splitlines() if line.startswith("[["))))
    assert vectors.shape == (2, 64) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert "PASS: 8/8 golden samples match" in done.stdout  # 4 token arrays + 4 sentences
    v = json.loads((demo["out"] / "manifest.json").read_text())["vocabulary"]
    assert v["rows_before"] == 400 and v["rows_after"] < 300 and v["coverage_corpus"] == 1.0


def test_vocab_pruned_bundle_is_smaller_embeds_text_like_the_source_and_validates_from_text(demo):
    out = demo["out"]
    assert demo["done"].returncode == 0, demo["done"].stderr[-3000:]
    m = json.loads((out / "manifest.json").read_text())
    v = m["vocabulary"]
    assert v["params_before"] - v["params_after"] == (v["rows_before"] - v["rows_after"]) * 64  # rows x width
    assert v["cosine_corpus"]["mean"] > 0.9999 and v["cosine_unseen"]["sentences"] == 640
    # the cut alone misses the default floor (0.99) exactly when the build warns, naming the words outside it
    warned = [w for w in m["warnings"] if w.startswith("the vocabulary was pruned to")]
    assert len(warned) == (v["cosine_unseen"]["mean"] < 0.99)
    assert v["words_outside_count"] >= len(v["words_outside"]) > 0
    assert not warned or all(f"'{word}'" in warned[0] for word in v["words_outside"][:8])
    assert m["model"]["bytes"] < _float_tflite_bytes() - 0.9 * (v["embedding_bytes_before"]
                                                               - v["embedding_bytes_after"])
    assert m["text"]["pooling"] == "mean" and m["text"]["normalize"] and (out / "tokenizer.json").is_file()
    assert "tokenizers==0.23.3" in (out / "requirements.txt").read_text().split()

    unseen = [line.split("\t", 1)[1] for line in (SAMPLES / "intent_eval.txt").read_text().splitlines()][80:100]
    embedded = run_runtime(out, "embed", *INSIDE, *unseen)
    assert embedded.returncode == 0, embedded.stderr
    got = np.array(json.loads(embedded.stdout))
    cosines = np.sum(got * _source_embeddings(INSIDE + unseen), axis=1)
    assert got.shape == (22, 64) and np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert cosines[:2].min() > 0.9999  # sentences of corpus words: the same tokens, the same embedding
    assert cosines[2:].mean() >= 0.95, cosines  # unseen sentences: some words spelled in pieces or [UNK]

    validated = run_runtime(out, "validate", "--json")
    report = json.loads(validated.stdout)
    assert validated.returncode == 0 and report["passed"] and len(report["samples"]) == 8  # 4 token arrays + 4 texts
