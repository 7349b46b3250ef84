"""What onnxruntime's exact int8 mode costs and buys on this host: U8S8 (default) vs U8U8 (`x64quantprecision`).

On x86 CPUs without VNNI, onnxruntime's U8S8 kernels multiply with VPMADDUBSW, whose int16 pair sums
saturate; the bundle runtime asks for the exact U8U8 kernels instead (runtime/backends.py), so a bundle
computes on every CPU what an ARM device computes. This prints, for each sample ONNX model's plain QDQ int8
(the build's own builder), side by side in one run: p50 with each kernel choice, and how far each is from
onnxruntime's reference QDQ arithmetic (graph optimisations off, no fused integer kernels).

    python bench/onnx_precision.py [--runs 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekiln.compiler.data import load_datasets  # noqa: E402
from edgekiln.compiler.evaluate.criterion import Criterion  # noqa: E402
from edgekiln.compiler.evaluate.judge import Judge  # noqa: E402
from edgekiln.compiler.evaluate.reference import Reference  # noqa: E402
from edgekiln.compiler.evaluate.timing import host_cpu, host_isa  # noqa: E402
from edgekiln.compiler.graph import load  # noqa: E402
from edgekiln.compiler.graph.onnx_graph import open_session  # noqa: E402
from edgekiln.compiler.recipe import Quantize, Recipe  # noqa: E402
from edgekiln.compiler.search import onnx_builder  # noqa: E402
from edgekiln.compiler.search.context import BuildContext  # noqa: E402
from edgekiln.compiler.search.variants import plan  # noqa: E402

SAMPLES = ROOT / "sample_models"
MODELS = ("mnist_resnet_nchw.onnx", "mnist_dwsep_nchw.onnx")


def int8_model(model: Path, work: Path) -> tuple[bytes, dict[str, np.ndarray]]:
    recipe = Recipe(source=str(model), calib=str(SAMPLES / "mnist_calib_nchw.npz"), calib_samples=128)
    graph = load(model, "onnx", work)
    data = load_datasets(recipe, graph.inputs)
    ctx = BuildContext(graph, "onnx", plan(Quantize.int8, "onnx", "onnx", only="int8"), data.calib,
                       Judge.for_build(Reference(graph), data, 1, None), Criterion(), work, False, "minmax", "uint8")
    built = {b.variant.name: b for b in onnx_builder.build(ctx).built}
    model_bytes = built["int8"].model
    assert model_bytes is not None
    return model_bytes, {name: x[:1] for name, x in data.fidelity_set.inputs.items()}


def session(model: bytes, exact: bool | None) -> object:
    """exact None: the reference arithmetic (no fusion); True / False: the fused kernels, U8U8 / U8S8."""
    import onnxruntime as ort

    if exact is None:
        return open_session(model, 1, optimize=False)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    if exact:
        options.add_session_config_entry("session.x64quantprecision", "1")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def p50(sess: object, feed: dict, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        sess.run(None, feed)  # type: ignore[attr-defined]
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"host: {host_cpu()}; int8 dot product: {host_isa()['int8_dot_product']}; 1 thread")
    for name in MODELS:
        with tempfile.TemporaryDirectory(prefix="edgekiln-bench-") as work:
            model, feed = int8_model(SAMPLES / name, Path(work))
        reference = session(model, None).run(None, feed)[0]  # type: ignore[attr-defined]
        kinds = {"U8S8 (default)": session(model, False), "U8U8 (exact)": session(model, True)}
        best = {k: min(p50(s, feed, args.runs) for _ in range(args.rounds)) for k, s in kinds.items()}
        print(f"\n{name}")
        for kind, sess in kinds.items():
            out = sess.run(None, feed)[0]  # type: ignore[attr-defined]
            print(f"  {kind:15s} p50 {best[kind]:.4f} ms   max |diff| to reference arithmetic "
                  f"{float(np.max(np.abs(out - reference))):.5f}")
        ratio = best["U8U8 (exact)"] / best["U8S8 (default)"]
        print(f"  exact / default p50: {ratio:.2f}x")


if __name__ == "__main__":
    main()
