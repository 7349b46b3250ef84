"""Which format to ship? ONNX float vs int8, and TFLite int8 vs ONNX int8, side by side on this host.

For each source model the real emitters produce float32 and int8 artifacts in both formats
(TFLite: TF converter for Keras, onnx2tf for NCHW ONNX; ONNX: tf2onnx / as loaded, then
onnxruntime static QDQ with the target's activation type). Every artifact is timed through
runtime.Model (what the bundle ships) at 1 and 2 threads, in alternating rounds; each keeps its
best round's p50 (the host is shared, noise only ever adds time).

    python bench/onnx_formats.py [--target rpi4] [--runs 200] [--rounds 3] [MODEL ...]

Latency is measured on THIS host, not on the target: it shows ratios, not device milliseconds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler.data import Dataset  # noqa: E402  (after the path set-up, so a checkout runs as is)
from compiler.emit import EmitOptions  # noqa: E402
from compiler.graph import detect_format, framework, load  # noqa: E402
from compiler.measure import open_model  # noqa: E402
from compiler.pipeline import EMITTERS, resolve_target  # noqa: E402
from compiler.recipe import CalibrationMethod, Quantize, Recipe  # noqa: E402
from compiler.stages import load_datasets  # noqa: E402

SAMPLES = ROOT / "sample_models"
DEFAULT_MODELS = ["mnist_resnet_nchw.onnx", "mnist_dwsep_nchw.onnx", "mnist_resnet.keras"]
THREADS = (1, 2)


def data_for(model: str) -> tuple[str, str]:
    suffix = "_nchw" if model.endswith(".onnx") else ""
    return str(SAMPLES / f"mnist_calib{suffix}.npz"), str(SAMPLES / f"mnist_eval{suffix}.npz")


def artifacts(model: Path, target_name: str, work: Path) -> tuple[dict, Dataset]:
    """{(format, 'float32'|'int8'): (bytes, layouts)} from the real emitters, and the evaluation data.

    TFLite int8 keeps float I/O here, like ONNX QDQ, so both time the same work.
    """
    calib, evaluation = data_for(model.name)
    recipe = Recipe(source=str(model), target=target_name, calib=calib, eval=evaluation, calib_samples=128)
    target = resolve_target(target_name)
    source_format = detect_format(model)
    graph = load(model, source_format, work)
    data = load_datasets(recipe, graph.inputs)
    found = {}
    for fmt in ("onnx", "tflite"):
        scratch = work / fmt
        scratch.mkdir()
        options = EmitOptions(Quantize.int8, False, CalibrationMethod.minmax, target.onnx_activation_type,
                              scratch)
        emitted = EMITTERS[framework(source_format), fmt](graph, data.calib, options)
        found[fmt, "float32"] = (emitted.baseline, emitted.layouts)
        found[fmt, "int8"] = (emitted.model, emitted.layouts)
    return found, data.evaluation


def p50s(found: dict, sample: dict, runs: int, rounds: int) -> dict[tuple[str, str, int], float]:
    """Best-of-rounds p50 (ms) per (format, precision, threads), rounds interleaved across configs."""
    models = {(fmt, prec, t): open_model(fmt, blob, t, layouts)
              for (fmt, prec), (blob, layouts) in found.items() for t in THREADS}
    best: dict[tuple[str, str, int], float] = {}
    for _ in range(rounds):
        for key, model in models.items():
            feeds = [sample[i.name][:1] for i in model.inputs]
            p50 = model.benchmark(feeds, runs=runs, warmup=20)["p50_ms"]
            best[key] = min(best.get(key, float("inf")), p50)
    return best


def report(name: str, found: dict, best: dict, activation: str) -> None:
    print(f"\n{name}  (ONNX int8: QDQ, {activation} activations; TFLite int8: integer; both float I/O)")
    print(f"  {'format':7s} {'float32 B':>10s} {'int8 B':>9s} {'size':>6s}   "
          + "   ".join(f"{t}T p50 float / int8 = ratio" for t in THREADS))
    for fmt in ("onnx", "tflite"):
        f_bytes, q_bytes = len(found[fmt, "float32"][0]), len(found[fmt, "int8"][0])
        cells = [f"{best[fmt, 'float32', t]:7.3f} / {best[fmt, 'int8', t]:6.3f} ms = "
                 f"{best[fmt, 'int8', t] / best[fmt, 'float32', t]:5.2f}x" for t in THREADS]
        print(f"  {fmt:7s} {f_bytes:10,d} {q_bytes:9,d} {q_bytes / f_bytes:5.3f}x   " + "   ".join(cells))
    for t in THREADS:
        tfl, onx = best["tflite", "int8", t], best["onnx", "int8", t]
        pick = "tflite" if tfl < onx else "onnx"
        print(f"  int8, {t} thread{'s' if t > 1 else ' '}: TFLite {tfl:.3f} ms vs ONNX {onx:.3f} ms "
              f"-> ONNX/TFLite {onx / tfl:.2f}x; faster here: {pick}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=DEFAULT_MODELS, help="files in sample_models/ or paths")
    parser.add_argument("--target", default="rpi4", help="target whose ONNX activation type is used")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    activation = resolve_target(args.target).onnx_activation_type
    for name in args.models:
        model = Path(name) if Path(name).exists() else SAMPLES / name
        with tempfile.TemporaryDirectory(prefix="edgekiln-bench-") as work:
            found, evaluation = artifacts(model, args.target, Path(work))
        best = p50s(found, evaluation.inputs, args.runs, args.rounds)
        report(model.name, found, best, activation)


if __name__ == "__main__":
    main()
