"""The sentence-encoder ladder (issue 36 deliverable 4): float, int8, int8 + vocabulary pruning, + head pruning,
+ layer dropping, each built alone (a forced TFLite variant, no search) from the sample encoder's token states.

    .venv/bin/python bench/bench_transformer.py --ladder [--builds DIR] [--variant int8]

Per rung: the bundle's MB (every file a device needs: model, tokenizer, golden vectors, runtime, manifest; the
report page left out) and the model file's, the rpi4 estimate of the manifest (the cost model, 4 threads, at the
model's compiled sequence length: the sample encoder's input is fixed at 24 tokens), and the cosine mean / p5 of
the bundle's sentence embedding (`python -m runtime embed`'s path: its tokenizer, mean over the mask, L2) to the
float source's on the evaluation sentences, none of which is in the corpus (the calibration sentences, which
--vocab-from auto keeps). Builds reuse --builds DIR when made with the same settings before (~20-60 s each here).

    .venv/bin/python bench/bench_transformer.py --ladder --minilm DIR [--seq-len 32] [--variant dynamic]

does the same for paraphrase-MiniLM-L3-v2 (DIR as bench/fetch_minilm.py fills it: the ONNX export cut to its
token states, tokenizer.json, its pooling files), from ONNX, compiled at --seq-len tokens. Its corpus is the first
300 sentences of sample_models/intent_calib.txt (the sample's smart-home requests: what an on-device assistant's
users type), its evaluation sentences those of intent_eval.txt outside the corpus (at most 200); the reference is
the float ONNX in onnxruntime at the sentence's own length. A first rung is the default build a user gets
(`--quantize auto --vocab-from auto`, any format): the issue's acceptance (int8 ships, <= 8 MB, cosine >= 0.98,
p5 >= 0.95); a second the same with --vocab-size MINILM_VOCAB_SIZE, TFLite. Each MiniLM build takes several
minutes on a 2-core host.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"
MODEL = SAMPLES / "intent_states.keras"
CORPUS, EVAL, TOKENIZER = SAMPLES / "intent_calib.txt", SAMPLES / "intent_eval.txt", SAMPLES / "intent_tokenizer.json"
MINILM_CORPUS, MINILM_EVAL = 300, 200     # sentences
# The word pieces --vocab-size 6000 kept on this corpus before the fill passed over other scripts' characters
# (6000 - 707 CJK, kana, Cyrillic.. single characters BERT lists before its first word; 5293 keeps the same set)
MINILM_VOCAB_SIZE = 5300


@dataclass(frozen=True)
class Source:
    """The model a ladder slims, its sentences and how the table names it."""

    model: Path
    corpus: Path          # the calibration sentences (--vocab-from auto keeps their tokens)
    eval: Path            # evaluation sentences, none of them in the corpus
    tokenizer: Path
    seq_len: int | None   # the compiled length where the model leaves it open
    title: str


@dataclass(frozen=True)
class Rung:
    """One build of the ladder: its label and the recipe options beyond the shared ones."""

    label: str
    name: str
    options: dict[str, Any]


SAMPLE = Source(MODEL, CORPUS, EVAL, TOKENIZER, None,
                f"{MODEL.name} (token states [1, 24, 64], mean-pooled, L2), TFLite")


def minilm_source(folder: Path, builds: Path, seq_len: int) -> Source:
    """paraphrase-MiniLM-L3-v2 from bench/fetch_minilm.py's folder, with its corpus and evaluation sentences made
    from the sample's (written to `builds`)."""
    model, tokenizer = folder / "model.onnx", folder / "tokenizer.json"
    if not model.is_file() or not tokenizer.is_file():
        raise SystemExit(f"error: {folder} has no model.onnx / tokenizer.json: "
                         f"run bench/fetch_minilm.py --dest {folder}")
    corpus = CORPUS.read_text().splitlines()[:MINILM_CORPUS]
    kept = set(corpus)
    outside = [s for s in dict.fromkeys(line.split("\t", 1)[-1] for line in EVAL.read_text().splitlines())
               if s not in kept][:MINILM_EVAL]
    builds.mkdir(parents=True, exist_ok=True)
    (builds / "minilm_corpus.txt").write_text("\n".join(corpus) + "\n")
    (builds / "minilm_eval.txt").write_text("\n".join(outside) + "\n")
    return Source(model, builds / "minilm_corpus.txt", builds / "minilm_eval.txt", tokenizer, seq_len,
                  f"paraphrase-MiniLM-L3-v2 ONNX (token states [1, {seq_len}, 384], mean-pooled), TFLite unless said")


def rungs(variant: str, default_rung: bool = False) -> list[Rung]:
    vocab = {"vocab_from": "auto"}
    heads = {**vocab, "prune_heads": 0.5}
    default = [Rung("default build (--quantize auto --vocab-from auto)", "default", {**vocab, "format": None}),
               Rung(f"--quantize auto --vocab-from auto --vocab-size {MINILM_VOCAB_SIZE}", "auto_vocab_size",
                    {**vocab, "vocab_size": MINILM_VOCAB_SIZE})]
    return default * default_rung + [
        Rung("float32", "float", {"variant": "float32"}),
        Rung(variant, "int8", {"variant": variant}),
        Rung(f"{variant} + vocabulary (--vocab-from auto)", "int8_vocab", {"variant": variant, **vocab}),
        Rung("  + heads (--prune-heads 0.5)", "int8_vocab_heads", {"variant": variant, **heads}),
        Rung("  + layers (--drop-layers 1)", "int8_vocab_heads_layers",
             {"variant": variant, **heads, "drop_layers": 1})]


def build_rung(source: Source, builds: Path, rung: Rung, log: Any) -> Path:
    """edgekiln build of the rung (rpi4, TFLite unless the rung says), reused when its recipe is unchanged."""
    from edgekiln.compiler.pipeline import build
    from edgekiln.compiler.recipe import Recipe

    out = builds / rung.name
    options = {"format": "tflite", **rung.options}
    recipe = Recipe(source=str(source.model), target="rpi4", quantize="auto", output=str(out), force=True,
                    bench_runs=20, calib=str(source.corpus), eval=str(source.eval), tokenizer=str(source.tokenizer),
                    seq_len=source.seq_len, **options)
    marker = out / "ladder-recipe.json"
    wanted = json.dumps({k: str(v) for k, v in sorted({**options, "seq_len": source.seq_len}.items())})
    if marker.is_file() and marker.read_text() == wanted:
        log(f"  reusing {out}")
        return out
    start = time.perf_counter()
    build(recipe)
    marker.write_text(wanted)
    log(f"  built {rung.name} in {time.perf_counter() - start:.0f} s")
    return out


def tokenizer_of(source: Source) -> Any:
    """The source's tokenizer, unpadded (each sentence at its own length), cut at the compiled length if any."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(source.tokenizer))
    tokenizer.no_padding()
    if source.seq_len:
        tokenizer.enable_truncation(source.seq_len)
    return tokenizer


def source_embeddings(source: Source, sentences: list[str]) -> np.ndarray:
    """The float source's sentence embeddings as its users compute them: its tokenizer, mean over the mask, L2."""
    if source.model.suffix == ".onnx":
        return _onnx_embeddings(source, sentences)
    from tokenizers import Tokenizer

    from edgekiln.compiler.tf_env import import_keras

    model = import_keras().models.load_model(source.model)
    encoded = Tokenizer.from_file(str(source.tokenizer)).encode_batch(sentences)
    ids, mask = (np.array([getattr(e, a) for e in encoded], np.int32) for a in ("ids", "attention_mask"))
    pooled = (model.predict(ids, verbose=0) * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def _onnx_embeddings(source: Source, sentences: list[str]) -> np.ndarray:
    """The float ONNX in onnxruntime, one sentence at a time at its own length (no padding at all)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(source.model), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    rows = []
    for encoded in tokenizer_of(source).encode_batch(sentences):
        feeds = {"input_ids": np.array([encoded.ids], np.int64),
                 "attention_mask": np.array([encoded.attention_mask], np.int64),
                 "token_type_ids": np.array([encoded.type_ids], np.int64)}
        rows.append(session.run(None, {k: v for k, v in feeds.items() if k in names})[0][0].mean(0))
    pooled = np.array(rows)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def measure(bundle: Path, sentences: list[str], reference: np.ndarray) -> dict[str, Any]:
    """Bundle and model MB, the rpi4 estimate, and the embedding's cosine to the source's (mean, p5)."""
    from edgekiln.runtime import load

    files = [p for p in bundle.rglob("*") if p.is_file() and p.name not in ("report.html", "ladder-recipe.json")]
    m = json.loads((bundle / "manifest.json").read_text())
    embedded = load(bundle).embed(sentences)
    embedded = embedded / np.linalg.norm(embedded, axis=1, keepdims=True)   # MiniLM's files say no Normalize
    cosines = np.sum(embedded * reference, axis=1)
    estimate = (m["latency"].get("target_estimate") or {}).get("p50_ms", float("nan"))
    return {"bundle_mb": sum(p.stat().st_size for p in files) / 1e6, "model_mb": m["model"]["bytes"] / 1e6,
            "rpi4_ms": estimate, "cos": float(cosines.mean()), "p5": float(np.percentile(cosines, 5)),
            "variant": m["quantization"]["variant"],
            "params": m["size"].get("params_after", m["size"].get("params"))}


def main(builds: Path, variant: str, log: Any, minilm: Path | None = None, seq_len: int = 32) -> None:
    source = SAMPLE if minilm is None else minilm_source(minilm, builds / "minilm", seq_len)
    folder = builds if minilm is None else builds / "minilm"
    sentences = [line.split("\t", 1)[-1] for line in source.eval.read_text().splitlines()]
    corpus = set(source.corpus.read_text().splitlines())
    outside = [s for s in sentences if s not in corpus]
    reference = source_embeddings(source, outside)
    rows = []
    for rung in rungs(variant, default_rung=minilm is not None):
        log(f"{rung.name}: {rung.options}")
        rows.append((rung, measure(build_rung(source, folder, rung, log), outside, reference)))
    print(f"sentence encoder ladder: {source.title}, target rpi4; cosine to the float source's embedding on "
          f"{len(outside)} evaluation sentences outside the corpus ({source.corpus.name}, {len(corpus)} sentences)")
    head = f"{'rung':<50} {'shipped':<22} {'bundle MB':>9} {'model MB':>8} {'rpi4 ms':>8} {'cos mean':>8} {'cos p5':>7}"
    print(head)
    print("-" * len(head))
    for rung, r in rows:
        print(f"{rung.label:<50} {r['variant']:<22} {r['bundle_mb']:>9.3f} {r['model_mb']:>8.3f} "
              f"{r['rpi4_ms']:>8.2f} {r['cos']:>8.4f} {r['p5']:>7.4f}")
    lengths = token_counts(source, outside)
    length = source.seq_len or 24
    print(f"rpi4 ms: the manifest's cost-model estimate (not a measurement) at the compiled length, {length} tokens "
          f"(the evaluation sentences: median {np.median(lengths):g}, longest {max(lengths)} tokens with [CLS] / "
          "[SEP]; the build ships static shapes, so no estimate per length yet)")


def token_counts(source: Source, sentences: list[str]) -> list[int]:
    """Each sentence's tokens as the source's tokenizer makes them ([CLS] and [SEP] included, no padding)."""
    return [int(sum(e.attention_mask)) for e in tokenizer_of(source).encode_batch(sentences)]


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "build" / "ladder", "int8",
         lambda text: print(text, file=sys.stderr, flush=True))
