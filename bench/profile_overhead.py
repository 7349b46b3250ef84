"""Does the per-op profile add up, and what does profiling cost? Every sample model, float32 and plain int8,
compiled by the builders a build uses (Keras -> TFLite, ONNX -> ONNX), profiled through runtime.Model.

For each artifact: the profile's sum of per-op times beside the whole model measured in the same rounds
(sum / whole, within +-20 %?), the plain steady-state p50 (runtime benchmark), the profile's wall time and
what it costs in inferences, and for onnxruntime the slowdown of one inference with its profiler on.

    python bench/profile_overhead.py [--threads 1] [--runs 30] [MODEL ...]

Times are measured on THIS host; they show ratios, not device milliseconds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekiln.compiler.data import load_datasets  # noqa: E402  (after the path set-up: a checkout runs)
from edgekiln.compiler.evaluate.criterion import Criterion  # noqa: E402
from edgekiln.compiler.evaluate.judge import Judge  # noqa: E402
from edgekiln.compiler.evaluate.reference import Reference  # noqa: E402
from edgekiln.compiler.graph import detect_format, framework, load  # noqa: E402
from edgekiln.compiler.profile import profile_model  # noqa: E402
from edgekiln.compiler.recipe import Quantize, Recipe  # noqa: E402
from edgekiln.compiler.search.context import BuildContext  # noqa: E402
from edgekiln.compiler.search.select import BUILDERS  # noqa: E402
from edgekiln.compiler.search.variants import plan  # noqa: E402
from edgekiln.compiler.tf_env import quiet_fds  # noqa: E402
from edgekiln.runtime.backends import OnnxBackend  # noqa: E402
from edgekiln.runtime.model import Model  # noqa: E402

SAMPLES = ROOT / "sample_models"
MODELS = ["mnist_cnn.keras", "mnist_resnet.keras", "mnist_resnet_nchw.onnx", "mnist_dwsep_nchw.onnx"]


def artifacts(source: Path, work: Path) -> tuple[str, dict[str, bytes], np.ndarray]:
    """(format, {variant: bytes}, one input sample) for float32 and plain int8."""
    calib = SAMPLES / ("mnist_calib_nchw.npz" if source.suffix == ".onnx" else "mnist_calib.npz")
    recipe = Recipe(source=str(source), target="rpi4", calib=str(calib), quantize=Quantize.int8)
    source_format = detect_format(str(source))
    kind = framework(source_format)
    graph = load(str(source), source_format, work, batch=1)
    data = load_datasets(recipe, graph.inputs)
    model_format = "onnx" if kind == "onnx" else "tflite"
    ctx = BuildContext(graph, kind, plan(Quantize.int8, model_format, kind, True, "uint8", only="int8"), data.calib,
                       Judge.for_build(Reference(graph), data, 1, None), Criterion(max_drop=None), work, True,
                       "minmax", "uint8", 1)
    made = BUILDERS[kind, model_format](ctx)
    sample = next(iter(data.calib.inputs.values()))[:1]
    return model_format, {b.variant.name: b.model for b in made.built if b.model is not None}, sample


def profiler_slowdown(model_bytes: bytes, threads: int, sample: np.ndarray, runs: int) -> float:
    """onnxruntime: one inference with its profiler on / off (best of `runs`, interleaved)."""
    with tempfile.TemporaryDirectory() as scratch:
        on, off = OnnxBackend(model_bytes, threads, profile_prefix=f"{scratch}/p"), OnnxBackend(model_bytes, threads)
        feeds = [sample]
        times = np.array([[_timed(b, feeds) for b in (on, off)] for _ in range(runs)])
        on.end_profiling()
    return float(times[:, 0].min() / times[:, 1].min())


def _timed(backend: OnnxBackend, feeds: list) -> float:
    import time

    backend.run(feeds)
    start = time.perf_counter()
    backend.run(feeds)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=MODELS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    print(f"{'model':24s} {'variant':8s} {'ops':>4s} {'whole ms':>9s} {'sum ms':>8s} {'sum/whole':>9s} "
          f"{'p50 ms':>8s} {'profile s':>9s} {'= inferences':>12s} {'ORT profiler on/off':>19s}")
    for name in args.models:
        with tempfile.TemporaryDirectory() as work, quiet_fds():
            model_format, variants, sample = artifacts(SAMPLES / name, Path(work))
            rows = []
            for variant, model_bytes in variants.items():
                profile = profile_model(model_format, model_bytes, args.threads, [sample], runs=args.runs)
                p50 = Model(model_format, model_bytes, args.threads).benchmark([sample], runs=200)["p50_ms"]
                slowdown = profiler_slowdown(model_bytes, args.threads, sample, args.runs) \
                    if model_format == "onnx" else None
                rows.append((variant, profile, p50, slowdown))
        for variant, profile, p50, slowdown in rows:
            agree = profile["agreement"]
            print(f"{name:24s} {variant:8s} {len(profile['ops']):4d} {profile['total_ms']:9.3f} "
                  f"{profile['sum_ms']:8.3f} {agree['ratio']:8.2f}{' ' if agree['within'] else '!'} {p50:8.3f} "
                  f"{profile['profile_s']:9.2f} {1e3 * profile['profile_s'] / p50:12.0f} "
                  f"{'-' if slowdown is None else f'{slowdown:.2f}x':>19s}")
    print(f"{profile['method'] if rows else ''}; '!' = sum of ops and whole differ by more than 20 %; "
          f"{args.threads} thread(s); whole = the fastest round (the profile's statistic), p50 = runtime benchmark")


if __name__ == "__main__":
    main()
