"""Float32 TFLite vs int8 bundle, side by side in one run: size, latency (1 and 2 threads), predict overhead.

    .venv/bin/python bench/bench_int8.py [--runs 300] [--model sample_models/mnist_resnet.keras]
    .venv/bin/python bench/bench_int8.py --ladder [--model ...]   (each rung of the int8 ladder, forced)

Each ratio is measured in this run on this machine; latencies interleave the two models round by
round so that drift of a shared host hits both alike. Prints host figures only: no target claims.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgekiln.compiler.pipeline import build  # noqa: E402
from edgekiln.compiler.recipe import Recipe  # noqa: E402
from edgekiln.runtime import Model  # noqa: E402
from edgekiln.runtime.model import quantize  # noqa: E402


def _p50(model: Model, feed: list[np.ndarray], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model.backend.run(feed)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def interleaved(models: dict[str, Model], feeds: dict[str, list[np.ndarray]], runs: int, rounds: int = 5) -> dict:
    """Median over rounds of each model's p50, the models alternating within every round."""
    per_round: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            per_round[name].append(_p50(model, feeds[name], runs // rounds))
    return {name: float(np.median(v)) for name, v in per_round.items()}


def _predict_overhead(model: Model, x: np.ndarray, runs: int) -> tuple[float, float]:
    """p50 of runtime.predict (float in/out, quantize + dequantize) vs the raw interpreter call."""
    raw_feed = [quantize(x, model.inputs[0])]
    direct, wrapped = [], []
    for _ in range(runs):
        start = time.perf_counter()
        model.backend.run(raw_feed)
        direct.append(time.perf_counter() - start)
        start = time.perf_counter()
        model.predict(x)
        wrapped.append(time.perf_counter() - start)
    return float(np.median(direct)) * 1e3, float(np.median(wrapped)) * 1e3


# The rungs between int8 and float (issue 33), each built alone (--variant), so every one is made even where
# --quantize auto would not try it (int8+adaround, 16x8 and int8+mixed are tried only where plain int8 misses).
# A rung is FORMAT:VARIANT. An ONNX source has no Keras rewrites or AdaRound on its TFLite side (onnx2tf), and
# int8+mixed is ONNX only (LiteRT cannot requantize int8 -> int16: docs/rewrites.md).
LADDER = ("tflite:int8", "tflite:int8+rewrites", "tflite:int8+adaround", "tflite:16x8", "tflite:float16")
ONNX_LADDER = ("tflite:int8", "tflite:int8+fastpath", "tflite:16x8", "onnx:int8", "onnx:int8+adaround",
               "onnx:int8+mixed", "onnx:16x8", "tflite:float16")
SAMPLES = ("mnist_cnn.keras", "mnist_resnet.keras", "mnist_resnet_nchw.onnx", "mnist_dwsep_nchw.onnx")


def _interval(row: dict, figure: str) -> str:
    low, high = (row.get("intervals") or {}).get(figure, (None, None))
    return f" [{low:.3f}, {high:.3f}]" if low is not None else ""


def _how(q: dict, name: str) -> str:
    """What the forced rung did: AdaRound's moved weights, the layers int8+mixed promoted, fastpath's pieces."""
    if q.get("variant") != name:
        return ""
    if q.get("adaround"):
        facts = q["adaround"]
        learned = sum(1 for layer in facts["layers"] if "kept" not in layer)
        return f"{facts['weights_changed']} weights moved in {learned} of {len(facts['layers'])} layers, " \
               f"{facts['seconds']} s"
    if q.get("mixed"):
        promoted = [p["layer"] for p in q["mixed"]["promoted"]]
        return f"{len(promoted)} layer(s) promoted to int16: {', '.join(promoted) or '-'}; " \
               f"{len(q['mixed']['concats_apart'])} concat(s) kept apart"
    if q.get("fast_path"):
        facts = q["fast_path"]
        return f"XNNPACK pieces {facts['pieces_before']} -> {facts['pieces_after']}"
    return ""


def constructed(rungs: tuple[str, ...]) -> None:
    """The ONNX rungs on the two constructed models plain int8 misses (tests/unit/onnx_models.py): a detector head
    whose Concat joins pixels with scores (int8+mixed keeps it apart) and a chain with a 300x outlier column
    (int8+mixed promotes that layer); 96 random samples each, 64 calibrate and 32 judge (--eval)."""
    from tests.unit.onnx_models import detector_head, outlier_chain

    x = np.random.default_rng(1).random((96, 8), np.float32)
    with tempfile.TemporaryDirectory() as data:
        np.savez(f"{data}/calib.npz", x=x[:64])
        np.savez(f"{data}/eval.npz", x=x[64:])
        for name, model in (("detector_head", detector_head()), ("outlier_chain", outlier_chain())):
            path = Path(data) / f"{name}.onnx"
            path.write_bytes(model.SerializeToString())
            ladder(str(path), Path(data), rungs, ("calib.npz", "eval.npz"))


def ladder(model: str, samples: Path, rungs: tuple[str, ...], data: tuple[str, str] | None = None) -> None:
    """Each rung's size, rpi4 estimate and fidelity with its 95 % intervals, one build per rung."""
    nchw = "_nchw" if model.endswith(".onnx") else ""
    calib, evaluation = data or (f"mnist_calib{nchw}.npz", f"mnist_eval{nchw}.npz")
    print(f"\n{Path(model).name}")
    print(f"{'rung':<22} {'bytes':>9} {'rpi4 est':>9} {'SQNR dB':>8}  {'agreement [95 %]':<24} {'cos p5':>7}  "
          f"{'pieces':>6} {'build s':>7}  notes")
    for rung in rungs:
        model_format, name = rung.split(":")
        with tempfile.TemporaryDirectory() as work:
            start = time.perf_counter()
            manifest = build(Recipe(source=model, target="rpi4", calib=str(samples / calib),
                                    eval=str(samples / evaluation), output=f"{work}/b", bench_runs=20,
                                    format=model_format, variant=name)).manifest
            seconds = time.perf_counter() - start
        q = manifest["quantization"]
        row = next((r for r in q.get("candidates", []) if r["name"] == name), None)
        if row is None:
            print(f"{rung:<22} not built: {q.get('not_built', {}).get(name, '?')}")
            continue
        agreement = f"{row['agreement']:.3f}{_interval(row, 'agreement')}" if row.get("agreement") is not None else "-"
        nan = float("nan")
        pieces = "-" if row.get("pieces") is None else str(row["pieces"])
        print(f"{rung:<22} {row['bytes']:>9,} {row.get('estimate_ms') or nan:>9.3f} {row.get('sqnr_db') or nan:>8.2f}  "
              f"{agreement:<24} {row.get('cosine_p5') or nan:>7.4f}  {pieces:>6} {seconds:>7.1f}  {_how(q, name)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="a model (repeatable); --ladder: every sample model "
                        "by default, else sample_models/mnist_resnet.keras")
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--ladder", action="store_true", help="each rung of the int8 ladder, built alone")
    parser.add_argument("--constructed", action="store_true", help="the ONNX rungs on two constructed models plain "
                        "int8 misses (int8+mixed keeps a Concat apart / promotes a layer)")
    parser.add_argument("--rungs", help="which rungs, FORMAT:VARIANT comma-separated (default: the source's ladder)")
    args = parser.parse_args()
    samples = ROOT / "sample_models"
    if args.constructed:
        rungs = ("onnx:int8", "onnx:int8+adaround", "onnx:int8+mixed", "onnx:16x8")
        constructed(tuple(args.rungs.split(",")) if args.rungs else rungs)
        return
    if args.ladder:
        for model in args.model or [str(samples / name) for name in SAMPLES]:
            default = ONNX_LADDER if model.endswith(".onnx") else LADDER
            ladder(model, samples, tuple(args.rungs.split(",")) if args.rungs else default)
        return
    args.model = (args.model or [str(ROOT / "sample_models/mnist_resnet.keras")])[0]
    with tempfile.TemporaryDirectory() as work:
        recipe = Recipe(source=args.model, target="rpi4", quantize="int8", calib=str(samples / "mnist_calib.npz"),
                        eval=str(samples / "mnist_eval.npz"), output=f"{work}/b", bench_runs=20)
        manifest = build(recipe).manifest
        model_bytes = (Path(work) / "b" / "model.tflite").read_bytes()
        from edgekiln.compiler.emit.tflite_convert import convert
        from edgekiln.compiler.graph.keras_graph import load
        from edgekiln.compiler.recipe import Quantize

        float_bytes = convert(load(args.model, "keras", Path(work)).saved_model_dir, Quantize.none, None)
    x = np.load(samples / "mnist_eval.npz")["x"][:1]
    print(f"model: {Path(args.model).name}  ({manifest['source']['params']:,} params, "
          f"{manifest['model']['macs']:,} MACs)")
    print(f"size: float32 {len(float_bytes):,} B   int8 {len(model_bytes):,} B   "
          f"ratio int8/float32 = {len(model_bytes) / len(float_bytes):.3f}")
    for threads in (1, 2):
        models = {"float32": Model("tflite", float_bytes, threads), "int8": Model("tflite", model_bytes, threads)}
        feeds = {name: [quantize(x, m.inputs[0])] for name, m in models.items()}
        p50 = interleaved(models, feeds, args.runs)
        print(f"latency p50, {threads} thread(s): float32 {p50['float32']:.4f} ms   int8 {p50['int8']:.4f} ms   "
              f"ratio int8/float32 = {p50['int8'] / p50['float32']:.3f}")
    direct, wrapped = _predict_overhead(Model("tflite", model_bytes, 1), x, args.runs)
    print(f"runtime.predict vs direct interpreter call (int8, 1 thread): {wrapped:.4f} ms vs {direct:.4f} ms  "
          f"overhead {wrapped - direct:+.4f} ms ({wrapped / direct:.2f}x)")


if __name__ == "__main__":
    main()
