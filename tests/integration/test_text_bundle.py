"""A sentence encoder a user can ship (issue 36): `make demo-text` builds the sample encoder's token states
(sample_models/intent_states.keras, mean-pooled by the bundle) with --vocab-from auto: a smaller bundle that takes
text, embeds it from the command line close to the source model's embedding, and validates from text."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekiln import runtime
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
    assert "PASS: 4/4 golden samples match" in done.stdout  # 4 sentences, checked from text
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
    assert validated.returncode == 0 and report["passed"] and len(report["samples"]) == 4  # 4 sentences, from text


def _copy(demo: dict, tmp_path: Path) -> Path:
    assert demo["done"].returncode == 0, demo["done"].stderr[-3000:]
    return Path(shutil.copytree(demo["out"], tmp_path / "bundle"))


def test_golden_vectors_are_the_sentences_token_ids_and_embeddings_not_the_token_states(demo, tmp_path):
    out = _copy(demo, tmp_path)
    m = json.loads((out / "manifest.json").read_text())
    with np.load(out / "golden.npz") as golden:
        arrays = {k: golden[k] for k in golden.files}
    assert sorted(arrays) == ["input_0", "text_embedding"]  # the intent model takes ids only; no output_0
    assert arrays["input_0"].shape == (4, m["text"]["seq_len"]) and arrays["text_embedding"].shape == (4, 64)
    assert np.array_equal(arrays["text_embedding"], runtime.load(out).embed(m["text"]["golden_sentences"]))
    # 4 sentences x 32 tokens x 64 float32 token states no longer ship: golden.npz is the ids and 4 x 64 floats
    assert (out / "golden.npz").stat().st_size < 4 * 64 * 4 + arrays["input_0"].nbytes + 1024


def test_validation_from_text_fails_on_a_changed_weight(demo, tmp_path):
    """One weight of the last attention output changed and the manifest re-signed (as a model the checksum
    cannot catch would run: another interpreter reading it differently): the embeddings move past the tolerance."""
    out = _copy(demo, tmp_path)
    model = bytearray((out / "model.tflite").read_bytes())
    weight = _constant(bytes(model), "block3_attention_1/attention_output_1/MatMul")
    at = bytes(model).find(weight.tobytes())
    model[at : at + 4] = np.float32(weight.flat[0] + 0.5).tobytes()
    _resign(out, bytes(model))
    report = runtime.load(out).validate()
    assert not report.passed and report.max_abs_diff > report.atol + report.rtol, report.to_dict()


def test_validation_from_text_fails_on_a_changed_tokenizer(demo, tmp_path, cli):
    """Two word pieces of the first golden sentence swap ids in tokenizer.json: the ids differ from the recorded
    ones, so that sentence fails (|diff| infinite) whatever the model makes of them."""
    out = _copy(demo, tmp_path)
    m = json.loads((out / "manifest.json").read_text())
    tokenizer = json.loads((out / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    first, second = [w for w in m["text"]["golden_sentences"][0].split() if w in vocab][:2]
    vocab[first], vocab[second] = vocab[second], vocab[first]
    (out / "tokenizer.json").write_text(json.dumps(tokenizer))
    report = runtime.load(out).validate()
    assert not report.passed and not report.samples[0].passed and report.samples[0].max_abs_diff == np.inf
    assert run_runtime(out, "validate").returncode == 1
    result = cli("validate", out)  # the compiler reads the runtime's JSON (an infinite |diff| is null there)
    assert result.exit_code == 1 and "sample 0: FAIL  max |diff| inf" in result.stdout, result.stdout


def _constant(model: bytes, name: str) -> np.ndarray:
    """The value of the model's constant tensor whose name ends with `name`."""
    from edgekiln.runtime.backends import tflite_interpreter_class

    interpreter = tflite_interpreter_class()[0](model_content=model)
    interpreter.allocate_tensors()
    index = next(d["index"] for d in interpreter.get_tensor_details() if d["name"].endswith(name))
    return np.array(interpreter.get_tensor(index))


def _resign(bundle: Path, model: bytes) -> None:
    (bundle / "model.tflite").write_bytes(model)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["model"]["sha256"] = hashlib.sha256(model).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest))
