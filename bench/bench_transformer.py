"""The sample transformer side by side in one run: float ONNX, the by-hand onnxruntime peer, edgekiln's builds.

    .venv/bin/python bench/bench_transformer.py [--runs 300] [--points 1:0.5 2:0.5] [--formats onnx] [--builds DIR]
    .venv/bin/python bench/bench_transformer.py --ladder [--variant int8] [--builds DIR]   (bench/transformer_ladder.py)
    .venv/bin/python bench/bench_transformer.py --ladder --minilm DIR [--seq-len 32]   (DIR: bench/fetch_minilm.py)

Rows: the float ONNX (edgekiln's tf2onnx export); the by-hand peer as onnxruntime's docs show it for BERT-class
models on CPU (`optimizer.optimize_model(model_type="bert")`, then `quantize_dynamic(weight_type=QInt8)`), run
in a plain InferenceSession (and once more as edgekiln's runtime opens a model, for its fidelity on CPUs
whose int8 products do not saturate); edgekiln's default builds (`--quantize auto`, ONNX and TFLite), its ONNX
`fused` and `fused+dynamic` candidates built alone (`variant`: whether the search ships one is the default row's
business) and its pruned builds (`--drop-layers N --prune-heads R`), run through the bundle runtime. Each:
bytes, p50 latency at 1 and 2 threads (all models interleaved round by round: drift of a shared host hits them
alike), mean and 5th-percentile cosine of the output vs the float Keras model's on the labelled eval sentences,
top-1 accuracy, and the speed ratio vs the peer. HOST figures only: this machine is not a Raspberry Pi.

Builds go to a temporary directory, or to --builds DIR, where a bundle built by an earlier run with the same
settings is reused: each build is edgekiln's whole candidate search (2-4 minutes here; the first run makes eight),
the measurement itself takes about two minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgekiln.compiler.evaluate.metrics import accuracy, cosine  # noqa: E402
from edgekiln.compiler.evaluate.timing import host_cpu, host_isa  # noqa: E402

SAMPLES = ROOT / "sample_models"
MODEL = SAMPLES / "intent_encoder.keras"
TEXT = {"calib": str(SAMPLES / "intent_calib.txt"), "eval": str(SAMPLES / "intent_eval.txt"),
        "tokenizer": str(SAMPLES / "intent_tokenizer.json")}
HEADS, HIDDEN = 4, 64          # the sample's attention layers (what optimize_model is told)
GOAL_SPEEDUP, GOAL_COS, GOAL_P5 = 1.5, 0.98, 0.95
ROUNDS = 5


@dataclass
class Row:
    """One model of the table: how it is opened (per thread count), its bytes, and what was measured."""

    label: str
    kind: str                                   # "peer" (the yardstick), "edgekiln" (compete), "reference"
    size: int
    open: Callable[[int], Callable[[], Any]]    # threads -> a call running one fixed sentence
    predict: Callable[[np.ndarray], np.ndarray]  # token ids [N, 24] -> outputs [N, 8]
    p50: dict[int, float] | None = None
    quality: dict | None = None


def session_row(label: str, model_bytes: bytes, ids: np.ndarray, kind: str = "reference") -> Row:
    """A model in a plain onnxruntime InferenceSession, as onnxruntime's docs open it (threads set, nothing else)."""
    import onnxruntime as ort

    def session(threads: int) -> Any:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])

    def opened(threads: int) -> Callable[[], Any]:
        s = session(threads)
        name, one = s.get_inputs()[0].name, ids[:1]
        return lambda: s.run(None, {name: one})

    fidelity_session = session(1)
    name = fidelity_session.get_inputs()[0].name

    def predict(x: np.ndarray) -> np.ndarray:
        return np.concatenate([fidelity_session.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])

    return Row(label, kind, len(model_bytes), opened, predict)


def runtime_row(label: str, model_bytes: bytes, ids: np.ndarray) -> Row:
    """A bare ONNX model opened as edgekiln's runtime opens one (exact U8U8 int8 kernels on x86 without VNNI)."""
    from edgekiln.runtime import Model

    def opened(threads: int) -> Callable[[], Any]:
        model = Model("onnx", model_bytes, threads)
        feed = model.raw_feeds([ids[:1]])
        return lambda: model.backend.run(feed)

    model = Model("onnx", model_bytes, 1)
    return Row(label, "reference", len(model_bytes), opened, lambda x: model.predict_list([x])[0])


def bundle_row(label: str, bundle: Path, ids: np.ndarray) -> Row:
    """A bundle's model as its runtime opens it on the device (runtime.load: checksum, session options)."""
    from edgekiln.runtime import load

    def opened(threads: int) -> Callable[[], Any]:
        model = load(bundle, threads)
        feed = model.raw_feeds([ids[:1]])
        return lambda: model.backend.run(feed)

    model = load(bundle, 1)
    size = (bundle / model.manifest["model"]["file"]).stat().st_size
    return Row(label, "edgekiln", size, opened, lambda x: model.predict_list([x])[0])


# --- the float ONNX and the by-hand peer -------------------------------------------------------------------

def float_onnx(work: Path) -> tuple[Any, bytes]:
    """The Keras source as edgekiln loads it, and its tf2onnx export (batch 1, opset 17) as edgekiln makes it."""
    from edgekiln.compiler.emit.onnx_convert import keras_to_onnx
    from edgekiln.compiler.graph.keras_graph import load

    graph = load(MODEL, "keras", work)
    return graph, keras_to_onnx(graph, 1)


def peer(float_path: Path, work: Path) -> tuple[bytes, dict[str, int], str]:
    """optimize_model(model_type="bert", num_heads, hidden_size) then quantize_dynamic(QInt8), as documented.

    Returns the model, the fusions that fired (get_fused_operator_statistics, nonzero ones) and how the optimizer
    ran. onnxruntime 1.32's default opt_level 1 for "bert" runs onnxruntime's basic graph optimization first, in
    optimize_by_onnxruntime, which imports torch (for `torch.version.hip`) even on CPU: without torch that step
    is done here the same way (ORT_ENABLE_BASIC, ConstantSharing disabled, the optimized graph saved) and the
    Python fusions then run on its output with opt_level 0.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

    from edgekiln.compiler.emit.onnx_fused import basic_optimized

    how = 'optimize_model(model_type="bert", opt_level 1: its default)'
    try:
        optimized = optimizer.optimize_model(str(float_path), model_type="bert", num_heads=HEADS, hidden_size=HIDDEN)
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        basic = work / "peer_basic.onnx"
        basic_optimized(float_path, basic)  # what edgekiln's fused candidates run too (emit/onnx_fused.py)
        optimized = optimizer.optimize_model(str(basic), model_type="bert", num_heads=HEADS, hidden_size=HIDDEN,
                                             opt_level=0)
        how = ('optimize_model(model_type="bert"): its opt_level-1 step imports torch (not installed), so '
               "onnxruntime's basic optimization ran as that step runs it, then the fusions at opt_level 0")
    fused = {op: n for op, n in optimized.get_fused_operator_statistics().items() if n}
    optimized_path, quantized_path = work / "peer_optimized.onnx", work / "peer_int8.onnx"
    optimized.save_model_to_file(str(optimized_path))
    quantize_dynamic(str(optimized_path), str(quantized_path), weight_type=QuantType.QInt8)
    return quantized_path.read_bytes(), fused, how


# --- edgekiln's builds ---------------------------------------------------------------------------------------

Point = tuple[int, float]  # (--drop-layers, --prune-heads); (0, 0) is the unpruned default build


FORCED = ("fused", "fused+dynamic")  # ONNX variants also built alone (`variant`), whatever the search ships


def point_name(model_format: str, point: Point, variant: str | None = None) -> str:
    drop, heads = point
    return f"{model_format}_auto" + (f"_drop{drop}" if drop else "") + (f"_heads{heads:g}" if heads else "") + \
        (f"_{variant.replace('+', '_')}" if variant else "")


def edgekiln_bundle(builds: Path, model_format: str, point: Point, log: Callable[[str], None],
                    variant: str | None = None) -> Path:
    """edgekiln build of the sample (--quantize auto, rpi4; `variant`: ship exactly that candidate), reused from
    `builds` when made with the same recipe."""
    from edgekiln.compiler.pipeline import build
    from edgekiln.compiler.recipe import Recipe

    drop, heads = point
    pruning = {"drop_layers": drop or None, "prune_heads": heads or None}
    name = point_name(model_format, point, variant)
    out = builds / name
    recipe = Recipe(source=str(MODEL), target="rpi4", format=model_format, quantize="auto", output=str(out),
                    force=True, bench_runs=20, variant=variant, **TEXT, **pruning)
    manifest = out / "manifest.json"
    if manifest.is_file() and _same_recipe(json.loads(manifest.read_text())["recipe"], recipe):
        log(f"  reusing {out}")
        return out
    start = time.perf_counter()
    build(recipe)
    log(f"  built {name} in {time.perf_counter() - start:.0f} s")
    return out


def _same_recipe(saved: dict, recipe: Any) -> bool:
    """The settings this bench varies, and the data files by name (the manifest keeps paths as given)."""
    keys = ("target", "format", "quantize", "drop_layers", "prune_heads", "variant")
    files = ("source", "calib", "eval", "tokenizer")
    return all(str(saved.get(k)) == str(getattr(recipe, k)) for k in keys) and \
        all(Path(str(saved.get(k))).name == Path(getattr(recipe, k)).name for k in files)


def shipped(bundle: Path) -> str:
    """The shipped variant, with what decided it (the target estimate, device timings or host timing), and the
    fusions of a fused variant."""
    q = json.loads((bundle / "manifest.json").read_text())["quantization"]
    fusion = q.get("details", {}).get("fusion")
    fused = f"; fused: {', '.join(f'{k} x{v}' for k, v in fusion['fusions'].items())}" if fusion else ""
    return f"{q['variant']} (by {q.get('evidence', {}).get('label', '?')}{fused})"


# --- measurement ---------------------------------------------------------------------------------------------

def interleaved(calls: dict[str, Callable[[], Any]], runs: int, rounds: int = ROUNDS) -> dict[str, float]:
    """Median over rounds of each call's p50 (ms), the calls alternating within every round."""
    for call in calls.values():
        for _ in range(10):
            call()
    per_round: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            times = np.empty(max(runs // rounds, 1))
            for k in range(times.size):
                start = time.perf_counter()
                call()
                times[k] = time.perf_counter() - start
            per_round[name].append(float(np.median(times)) * 1e3)
    return {name: float(np.median(v)) for name, v in per_round.items()}


def quality(row: Row, ids: np.ndarray, labels: np.ndarray, reference: np.ndarray) -> dict:
    out = row.predict(ids)
    return {**cosine(reference, out), "top1": accuracy([out], labels)}


# --- the table -----------------------------------------------------------------------------------------------

def print_table(rows: list[Row], peer_row: Row) -> None:
    head = (f"{'row':<60} {'bytes':>9} {'p50 1t ms':>9} {'p50 2t ms':>9} {'cos mean':>9} {'cos p5':>8} "
            f"{'top-1 %':>7} {'x peer 1t':>9} {'x peer 2t':>9}")
    print(head)
    print("-" * len(head))
    assert peer_row.p50 is not None
    for row in rows:
        assert row.p50 is not None and row.quality is not None
        q, p = row.quality, row.p50
        print(f"{row.label:<60} {row.size:>9,} {p[1]:>9.3f} {p[2]:>9.3f} {q['cosine_mean']:>9.4f} "
              f"{q['cosine_p5']:>8.4f} {q['top1']:>7.2f} {peer_row.p50[1] / p[1]:>9.2f} {peer_row.p50[2] / p[2]:>9.2f}")


def print_goal(rows: list[Row], peer_row: Row) -> None:
    """The issue's goal: edgekiln's best point >= 1.5x the peer's speed at mean cosine >= 0.98, p5 >= 0.95."""
    assert peer_row.p50 is not None
    faithful = [r for r in rows if r.kind == "edgekiln" and r.quality
                and r.quality["cosine_mean"] >= GOAL_COS and r.quality["cosine_p5"] >= GOAL_P5]
    for threads in (1, 2):
        if not faithful:
            print(f"goal ({threads} thread(s)): no edgekiln row has mean cosine >= {GOAL_COS} and p5 >= {GOAL_P5}")
            continue
        best = min(faithful, key=lambda r: r.p50[threads] if r.p50 else np.inf)
        assert best.p50 is not None
        ratio = peer_row.p50[threads] / best.p50[threads]
        verdict = "REACHED" if ratio >= GOAL_SPEEDUP else "NOT reached"
        print(f"goal ({threads} thread(s)): {verdict}: best faithful edgekiln row '{best.label}' is {ratio:.2f}x the "
              f"peer's speed ({best.p50[threads]:.3f} vs {peer_row.p50[threads]:.3f} ms; goal {GOAL_SPEEDUP}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="timed runs per model and thread count")
    parser.add_argument("--points", nargs="*", default=[(1, 0.5), (1, 0.0)], type=_point,
                        help="pruned builds DROP:HEADS (--drop-layers DROP --prune-heads HEADS; 0 leaves one out), "
                             "each in every --pruned-formats format (default: 1:0.5 and 1:0)")
    parser.add_argument("--pruned-formats", nargs="*", default=["onnx", "tflite"], choices=["onnx", "tflite"])
    parser.add_argument("--formats", nargs="*", default=["onnx", "tflite"], choices=["onnx", "tflite"],
                        help="formats of the unpruned default build (ONNX adds the forced fused variants)")
    parser.add_argument("--builds", type=Path, help="keep (and reuse) the bundles here instead of a tempdir")
    parser.add_argument("--ladder", action="store_true", help="the sentence-encoder ladder instead (float, int8, "
                        "+ vocabulary, + heads, + layers: bench/transformer_ladder.py)")
    parser.add_argument("--variant", default="int8", help="--ladder: the int8 candidate its rungs ship")
    parser.add_argument("--minilm", type=Path, help="--ladder: paraphrase-MiniLM-L3-v2 from this folder "
                        "(bench/fetch_minilm.py fills it) instead of the sample encoder")
    parser.add_argument("--seq-len", type=int, default=32, help="--minilm: the compiled sequence length")
    args = parser.parse_args()

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-transformer-") as tmp:
        work, builds = Path(tmp), args.builds or Path(tmp) / "builds"
        builds.mkdir(parents=True, exist_ok=True)
        if args.ladder:
            from bench.transformer_ladder import main as ladder

            return ladder(builds, args.variant, log, args.minilm, args.seq_len)
        log("exporting the float ONNX (tf2onnx) and making the peer")
        graph, float_bytes = float_onnx(work)
        float_path = work / "float.onnx"
        float_path.write_bytes(float_bytes)
        peer_bytes, fused, how = peer(float_path, work)
        data = _eval_data(graph)
        ids, labels = data.inputs[graph.inputs[0].name], data.labels
        reference = graph.run(data.inputs)[0]
        rows = [session_row("float32 ONNX (tf2onnx), onnxruntime", float_bytes, ids),
                session_row("peer: optimize_model + quantize_dynamic", peer_bytes, ids, kind="peer"),
                runtime_row("  the peer, exact U8U8 kernels (edgekiln runtime)", peer_bytes, ids)]
        points: list[tuple[str, Point, str | None]] = [(f, (0, 0.0), None) for f in args.formats]
        points += [("onnx", (0, 0.0), v) for v in FORCED if "onnx" in args.formats]
        points += [(f, p, None) for p in args.points for f in args.pruned_formats]
        log("edgekiln builds (--quantize auto, --target rpi4)")
        bundles = []
        for model_format, point, variant in points:
            bundle = edgekiln_bundle(builds, model_format, point, log, variant)
            bundles.append((bundle.name, shipped(bundle)))
            what = ", ".join([f"drop {point[0]}"] * bool(point[0]) + [f"heads {point[1]:g}"] * bool(point[1]) +
                             [f"variant {variant} forced"] * bool(variant))
            what = f" {what}" if what else " default"
            rows.append(bundle_row(f"edgekiln {model_format}{what}: {bundles[-1][1].split(' (')[0]}", bundle, ids))
        log("fidelity on the eval sentences; latency, interleaved")
        for row in rows:
            row.quality = quality(row, ids, labels, reference)
        for threads in (1, 2):
            p50 = interleaved({row.label: row.open(threads) for row in rows}, args.runs)
            for row in rows:
                row.p50 = {**(row.p50 or {}), threads: p50[row.label]}
        _print_header(how, fused, len(labels), args.runs, bundles)
        peer_row = next(r for r in rows if r.kind == "peer")
        print_table(rows, peer_row)
        print()
        print_goal(rows, peer_row)


def _point(text: str) -> Point:
    try:
        drop, heads = text.split(":")
        return int(drop), float(heads)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected DROP:HEADS (e.g. 1:0.5), got '{text}'") from None


def _eval_data(graph: Any) -> Any:
    from edgekiln.compiler.data import in_model_types, load_data

    data = load_data(TEXT["eval"], graph.inputs, role="evaluation", tokenizer=TEXT["tokenizer"])
    return in_model_types(data, graph.inputs)


def _print_header(how: str, fused: dict[str, int], samples: int, runs: int, bundles: list[tuple[str, str]]) -> None:
    isa = host_isa()
    print(f"sample transformer: {MODEL.name} (4 post-LN encoder blocks, width {HIDDEN}, {HEADS} heads, "
          "input_ids int32 [1, 24], 8 intents)")
    print(f"HOST figures, not Raspberry Pi figures: {host_cpu()}, {isa['machine']}, ISA {' '.join(isa['flags'])}, "
          f"int8 dot product: {isa['int8_dot_product']}")
    print(f"peer: {how}; then quantize_dynamic(weight_type=QInt8); fusions that fired: "
          f"{', '.join(f'{k} x{v}' for k, v in fused.items()) or 'none'}")
    print("timing: float ONNX and peer in a plain onnxruntime InferenceSession (intra_op_num_threads only), as "
          "the docs show; edgekiln rows through the bundle runtime (runtime.load), which on an x86 CPU without VNNI "
          "asks onnxruntime for its exact U8U8 int8 kernels (session.x64quantprecision); TFLite rows in LiteRT "
          "(num_threads)")
    print(f"fidelity: output vs the float Keras model on the {samples} labelled eval sentences; p50 of {runs} runs "
          f"per model and thread count, median of {ROUNDS} interleaved rounds")
    for name, variant in bundles:
        print(f"  {name}: ships {variant}")
    print("  (rpi4's ONNX int8 is s8s8, the ARM fast path; on this x86 host it runs on slow kernels, which is why "
          "edgekiln's build times it as its u8s8 twin: its host latency here says little about the Pi)")
    print("  (2 threads can be slower than 1 here: the host has 2 cores, shared with other work)")
    print()


if __name__ == "__main__":
    main()
