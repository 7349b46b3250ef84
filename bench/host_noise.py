"""How far apart two IDENTICAL models time on this host, timed as the build times its candidates: the noise
floor below which two host p50s cannot be told apart (compiler/search/choose.py's SLOWER_MARGIN).

    python bench/host_noise.py                       # ~2 min: 2 anchor models x 30 repeats
    python bench/host_noise.py --repeats 60 --models mobilenet_v2:int8

Each repeat opens two copies of one model from the same bytes and times them with the build's own
interleaved rounds (compiler/evaluate/timing.interleaved_feeds: ROUNDS rounds, each running every model for
about ROUND_MS, p50 = the median of round medians, min runs per round as `build` derives it from
--bench-runs). The models are identical, so any ratio of their p50s other than 1 is noise. It prints, per
model, the spread of max(a / b, b / a) over the repeats and its 95th percentile: a margin at that
percentile calls two identical models "the same" 95 times in 100 on this host.

The models are bench/anchor_models.py's (random-weight MobileNets as .tflite, converted once and cached).
The figure depends on the host and its load: re-run it on a new kind of machine and keep the measured
figure with the command in choose.py's comment.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.anchor_models import tflite_bytes  # noqa: E402
from edgekiln.compiler.evaluate.runner import open_model  # noqa: E402
from edgekiln.compiler.evaluate.timing import interleaved_feeds  # noqa: E402
from edgekiln.compiler.recipe import Recipe  # noqa: E402
from edgekiln.compiler.search.select import ROUNDS  # noqa: E402

DEFAULT_MODELS = ("mobilenet_v3_small:float32", "mobilenet_v2:int8")


def feed(model: object) -> list[np.ndarray]:
    """One random input per model input, in its compiled dtype and shape (timing does not depend on values)."""
    rng = np.random.default_rng(0)
    arrays = []
    for info in model.inputs:  # type: ignore[attr-defined]
        shape = tuple(1 if d < 0 else d for d in info.shape)
        if info.dtype in ("int8", "uint8"):
            limits = np.iinfo(info.dtype)
            arrays.append(rng.integers(limits.min, limits.max, shape).astype(info.dtype))
        else:
            arrays.append(rng.standard_normal(shape).astype(info.dtype))
    return arrays


def ratios(model_bytes: bytes, threads: int, min_runs: int, repeats: int) -> list[float]:
    """a/b of the p50s of two copies of one model, per repeat, timed as the candidate table is (a first)."""
    found = []
    for _ in range(repeats):
        a, b = (open_model("tflite", model_bytes, threads) for _ in range(2))
        timed = interleaved_feeds({"a": a, "b": b}, {"a": feed(a), "b": feed(b)}, min_runs, ROUNDS)
        found.append(timed["a"]["p50_ms"] / timed["b"]["p50_ms"])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), help="ARCHITECTURE:DTYPE ...")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1),
                        help="as a build for a 4-core target on this host (timing.threads_for)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "edgekiln" / "anchors")
    args = parser.parse_args()
    min_runs = max(1, Recipe(source="model").bench_runs // ROUNDS)  # what build passes (search/select.py)
    print(f"two identical models, {ROUNDS} interleaved rounds each (>= {min_runs} runs per round), "
          f"{args.threads} threads, {args.repeats} repeats; noise = max(a/b, b/a) of their p50s")
    load_at_start = os.getloadavg()[0]
    print(f"host: {os.cpu_count()} cores, load average {load_at_start:.2f} (1 min) at the start")
    worst = []
    for spec in args.models:
        name, dtype = spec.split(":")
        a_to_b = np.array(ratios(tflite_bytes(name, dtype, args.cache), args.threads, min_runs, args.repeats))
        spread = np.maximum(a_to_b, 1 / a_to_b)
        p95 = float(np.percentile(spread, 95))
        worst.append(p95)
        print(f"  {spec:28s} median {np.median(spread):.4f}  p90 {np.percentile(spread, 90):.4f}  "
              f"p95 {p95:.4f}  max {spread.max():.4f}  (a/b, a timed first: median {np.median(a_to_b):.4f}, "
              f"range {a_to_b.min():.4f}..{a_to_b.max():.4f})")
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at the end")
    print(f"p95 of the noise, worst model: {max(worst):.4f} -> a margin of {(max(worst) - 1) * 100:.1f} %")
    if max(os.getloadavg()[0], load_at_start) > (os.cpu_count() or 1):
        print("WARNING: the host was loaded by other work (load average above its core count): this is the noise "
              "of a busy host, not the figure SLOWER_MARGIN should hold (compiler/search/choose.py); re-run it quiet")


if __name__ == "__main__":
    main()
