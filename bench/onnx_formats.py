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

from edgekiln.compiler.data import load_datasets  # noqa: E402  (after the path set-up: a checkout runs)
from edgekiln.compiler.evaluate.criterion import Criterion  # noqa: E402
from edgekiln.compiler.evaluate.judge import Judge  # noqa: E402
from edgekiln.compiler.evaluate.reference import Reference  # noqa: E402
from edgekiln.compiler.evaluate.runner import open_model  # noqa: E402
from edgekiln.compiler.graph import detect_format, framework, load  # noqa: E402
from edgekiln.compiler.model_inputs import Dataset  # noqa: E402  (after the path set-up: a checkout runs)
from edgekiln.compiler.pipeline import resolve_target  # noqa: E402
from edgekiln.compiler.recipe import Quantize, Recipe  # noqa: E402
from edgekiln.compiler.search.context import BuildContext  # noqa: E402
from edgekiln.compiler.search.select import BUILDERS  # noqa: E402
from edgekiln.compiler.search.variants import plan  # noqa: E402

SAMPLES = ROOT / "sample_models"
DEFAULT_MODELS = ["mnist_resnet_nchw.onnx", "mnist_dwsep_nchw.onnx", "mnist_resnet.keras"]
THREADS = (1, 2)
ACTIVATIONS = {"int8": "s8s8", "uint8": "u8s8"}  # onnxruntime's names: activations, then weights


def data_for(model: str) -> tuple[str, str]:
    suffix = "_nchw" if model.endswith(".onnx") else ""
    return str(SAMPLES / f"mnist_calib{suffix}.npz"), str(SAMPLES / f"mnist_eval{suffix}.npz")


def artifacts(model: Path, work: Path) -> tuple[dict, Dataset]:
    """{name: (format, bytes, layouts)} from the builds' own builders (float32 and plain int8), and the
    evaluation data.

    ONNX int8 is built with both activation types (s8s8 is the ARM choice, u8s8 the x86 one);
    TFLite int8 keeps float I/O here, like ONNX QDQ, so both time the same work.
    """
    calib, evaluation = data_for(model.name)
    recipe = Recipe(source=str(model), calib=calib, eval=evaluation, calib_samples=128)
    source_format = detect_format(model)
    graph = load(model, source_format, work)
    data = load_datasets(recipe, graph.inputs)
    found = {}
    source, judge = framework(source_format), Judge.for_build(Reference(graph), data, 1, None)
    for fmt, activation in (("onnx", "int8"), ("onnx", "uint8"), ("tflite", "int8")):
        scratch = work / f"{fmt}_{activation}"
        scratch.mkdir()
        ctx = BuildContext(graph, source, plan(Quantize.int8, fmt, source, True, activation, only="int8"), data.calib,
                           judge, Criterion(), scratch, False, "minmax", activation)
        built = {b.variant.name: b for b in BUILDERS[source, fmt](ctx).built}
        found[f"{fmt} float32"] = (fmt, built["float32"].model, built["float32"].layouts)
        found[f"{fmt} int8" + (f" ({ACTIVATIONS[activation]})" if fmt == "onnx" else "")] = \
            (fmt, built["int8"].model, built["int8"].layouts)
    assert data.evaluation is not None
    return found, data.evaluation


def p50s(found: dict, sample: dict, runs: int, rounds: int) -> dict[tuple[str, int], float]:
    """Best-of-rounds p50 (ms) per (artifact, threads), rounds interleaved across artifacts."""
    models = {(name, t): open_model(fmt, blob, t, layouts)
              for name, (fmt, blob, layouts) in found.items() for t in THREADS}
    best: dict[tuple[str, int], float] = {}
    for _ in range(rounds):
        for key, model in models.items():
            feeds = [sample[i.name][:1] for i in model.inputs]
            p50 = model.benchmark(feeds, runs=runs, warmup=20)["p50_ms"]
            best[key] = min(best.get(key, float("inf")), p50)
    return best


def report(name: str, found: dict, best: dict, target: str, activation: str) -> None:
    print(f"\n{name} (host-measured p50; TFLite int8 and ONNX QDQ both with float I/O)")
    print(f"  {'artifact':18s} {'bytes':>9s} {'vs float':>8s}   "
          + "   ".join(f"p50 {t}T ms (vs float)" for t in THREADS))
    for key, (fmt, blob, _) in found.items():
        float_bytes = len(found[f"{fmt} float32"][1])
        cells = [f"{best[key, t]:7.3f} ({best[key, t] / best[f'{fmt} float32', t]:4.2f}x)" for t in THREADS]
        size = f"  {key:18s} {len(blob):9,d} {len(blob) / float_bytes:7.3f}x   "
        print(size + "   ".join(f"{c:>20s}" for c in cells))
    onnx_key = f"onnx int8 ({ACTIVATIONS[activation]})"
    for t in THREADS:
        tfl, onx = best["tflite int8", t], best[onnx_key, t]
        faster = "tflite" if tfl < onx else "onnx"
        print(f"  {target} ships {onnx_key}; {t} thread{'s' if t > 1 else ''}: TFLite int8 {tfl:.3f} ms vs "
              f"ONNX int8 {onx:.3f} ms = ONNX/TFLite {onx / tfl:.2f}x -> faster here: {faster}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=DEFAULT_MODELS, help="files in sample_models/ or paths")
    parser.add_argument("--target", default="rpi4", help="target whose ONNX int8 flavour is compared")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    activation = resolve_target(args.target).onnx_activation_type
    for name in args.models:
        model = Path(name) if Path(name).exists() else SAMPLES / name
        with tempfile.TemporaryDirectory(prefix="edgekiln-bench-") as work:
            found, evaluation = artifacts(model, Path(work))
        best = p50s(found, evaluation.inputs, args.runs, args.rounds)
        report(model.name, found, best, args.target, activation)


if __name__ == "__main__":
    main()
