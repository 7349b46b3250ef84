"""The sentence-encoder ladder (issue 36 deliverable 4): float, int8, int8 + vocabulary pruning, + head pruning,
+ layer dropping, each built alone (a forced TFLite variant, no search) from the sample encoder's token states.

    .venv/bin/python bench/bench_transformer.py --ladder [--builds DIR] [--variant int8]

Per rung: the bundle's MB (every file a device needs: model, tokenizer, golden vectors, runtime, manifest; the
report page left out) and the model file's, the rpi4 estimate of the manifest (the cost model, 4 threads, at the
model's compiled sequence length: the sample encoder's input is fixed at 24 tokens), and the cosine mean / p5 of
the bundle's sentence embedding (`python -m runtime embed`'s path: its tokenizer, mean over the mask, L2) to the
float source's on the evaluation sentences, none of which is in the corpus (the calibration sentences, which
--vocab-from auto keeps). Builds reuse --builds DIR when made with the same settings before (~20-60 s each here).
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


@dataclass(frozen=True)
class Rung:
    """One build of the ladder: its label and the recipe options beyond the shared ones."""

    label: str
    name: str
    options: dict[str, Any]


def rungs(variant: str) -> list[Rung]:
    vocab = {"vocab_from": "auto"}
    heads = {**vocab, "prune_heads": 0.5}
    return [Rung("float32", "float", {"variant": "float32"}),
            Rung(variant, "int8", {"variant": variant}),
            Rung(f"{variant} + vocabulary (--vocab-from auto)", "int8_vocab", {"variant": variant, **vocab}),
            Rung("  + heads (--prune-heads 0.5)", "int8_vocab_heads", {"variant": variant, **heads}),
            Rung("  + layers (--drop-layers 1)", "int8_vocab_heads_layers",
                 {"variant": variant, **heads, "drop_layers": 1})]


def build_rung(builds: Path, rung: Rung, log: Any) -> Path:
    """edgekiln build of the rung (rpi4, TFLite), reused when its recipe is unchanged."""
    from edgekiln.compiler.pipeline import build
    from edgekiln.compiler.recipe import Recipe

    out = builds / rung.name
    recipe = Recipe(source=str(MODEL), target="rpi4", format="tflite", quantize="auto", output=str(out), force=True,
                    bench_runs=20, calib=str(CORPUS), eval=str(EVAL), tokenizer=str(TOKENIZER), **rung.options)
    marker = out / "ladder-recipe.json"
    wanted = json.dumps({k: str(v) for k, v in sorted(rung.options.items())})
    if marker.is_file() and marker.read_text() == wanted:
        log(f"  reusing {out}")
        return out
    start = time.perf_counter()
    build(recipe)
    marker.write_text(wanted)
    log(f"  built {rung.name} in {time.perf_counter() - start:.0f} s")
    return out


def source_embeddings(sentences: list[str]) -> np.ndarray:
    """The float source's sentence embeddings as its users compute them: its tokenizer, mean over the mask, L2."""
    from tokenizers import Tokenizer

    from edgekiln.compiler.tf_env import import_keras

    model = import_keras().models.load_model(MODEL)
    encoded = Tokenizer.from_file(str(TOKENIZER)).encode_batch(sentences)
    ids, mask = (np.array([getattr(e, a) for e in encoded], np.int32) for a in ("ids", "attention_mask"))
    pooled = (model.predict(ids, verbose=0) * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def measure(bundle: Path, sentences: list[str], reference: np.ndarray) -> dict[str, float]:
    """Bundle and model MB, the rpi4 estimate, and the embedding's cosine to the source's (mean, p5)."""
    from edgekiln.runtime import load

    files = [p for p in bundle.rglob("*") if p.is_file() and p.name not in ("report.html", "ladder-recipe.json")]
    m = json.loads((bundle / "manifest.json").read_text())
    cosines = np.sum(load(bundle).embed(sentences) * reference, axis=1)
    estimate = (m["latency"].get("target_estimate") or {}).get("p50_ms", float("nan"))
    return {"bundle_mb": sum(p.stat().st_size for p in files) / 1e6, "model_mb": m["model"]["bytes"] / 1e6,
            "rpi4_ms": estimate, "cos": float(cosines.mean()), "p5": float(np.percentile(cosines, 5)),
            "variant": m["quantization"]["variant"], "params": m["size"].get("params_after", m["size"].get("params"))}


def main(builds: Path, variant: str, log: Any) -> None:
    sentences = [line.split("\t", 1)[-1] for line in EVAL.read_text().splitlines()]
    corpus = set(CORPUS.read_text().splitlines())
    outside = [s for s in sentences if s not in corpus]
    reference = source_embeddings(outside)
    rows = []
    for rung in rungs(variant):
        rows.append((rung, measure(build_rung(builds, rung, log), outside, reference)))
    print(f"sentence encoder ladder: {MODEL.name} (token states [1, 24, 64], mean-pooled, L2), TFLite, target rpi4; "
          f"cosine to the float source's embedding on {len(outside)} evaluation sentences outside the corpus "
          f"({CORPUS.name}, {len(corpus)} sentences)")
    head = f"{'rung':<44} {'shipped':<22} {'bundle MB':>9} {'model MB':>8} {'rpi4 ms':>8} {'cos mean':>8} {'cos p5':>7}"
    print(head)
    print("-" * len(head))
    for rung, r in rows:
        print(f"{rung.label:<44} {r['variant']:<22} {r['bundle_mb']:>9.3f} {r['model_mb']:>8.3f} "
              f"{r['rpi4_ms']:>8.2f} {r['cos']:>8.4f} {r['p5']:>7.4f}")
    lengths = token_counts(outside)
    print(f"rpi4 ms: the manifest's cost-model estimate (not a measurement) at the compiled length, 24 tokens (the "
          f"evaluation sentences: median {np.median(lengths):g}, longest {max(lengths)} tokens with [CLS] / [SEP]; "
          "the build ships static shapes, so no estimate per length yet)")


def token_counts(sentences: list[str]) -> list[int]:
    """Each sentence's tokens as the sample tokenizer makes them ([CLS] and [SEP] included, no padding)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(TOKENIZER))
    return [int(sum(e.attention_mask)) for e in tokenizer.encode_batch(sentences)]


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "build" / "ladder", "int8",
         lambda text: print(text, file=sys.stderr, flush=True))
