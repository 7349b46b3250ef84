"""The prune x quantize front of each sample model, and what parallel building buys, in one run.

    .venv/bin/python bench/bench_sweep.py [--models mnist_cnn,mnist_resnet] [--prune 0,0.25,0.5]
        [--quantize float32,int8] [--no-ray]

For each sample model: one sweep with --jobs 1 (printed: every point, the front, the chosen point), then the
same grid again from scratch with --jobs 2 and with --executor ray (2 CPUs), and the wall times side by side.
The front's latencies are timed on this host by the sweep itself (all points in one process, interleaved
rounds); the rpi4 estimate decides when this host is not an arm64 machine, as the sweep says.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgekiln.compiler.recipe import Recipe  # noqa: E402
from edgekiln.compiler.sweep import SweepOptions, run_sweep  # noqa: E402
from edgekiln.compiler.sweep.points import parse_prunes  # noqa: E402

SAMPLES = ROOT / "sample_models"


def _sweep(model: str, folder: Path, prunes: list, variants: list[str], jobs: int, executor: str) -> tuple[dict, float]:
    base = Recipe(source=str(SAMPLES / f"{model}.keras"), target="rpi4", calib=str(SAMPLES / "mnist_calib.npz"),
                  eval=str(SAMPLES / "mnist_eval.npz"), output=str(folder), bench_runs=20, recover="reconstruct")
    start = time.monotonic()
    result = run_sweep(SweepOptions(base, prunes, variants, ["tflite"], jobs=jobs, executor=executor))
    return result, time.monotonic() - start


def _print_front(model: str, result: dict) -> None:
    axis = result["latency"]
    print(f"\n{model}: {len(result['points'])} points, latency axis {axis} ({result['evidence']['label']})")
    print(f"{'point':<22}{'host p50 ms':>12}{'rpi4 est ms':>12}{'accuracy':>10}{'drop':>7}{'bytes':>10}"
          f"{'MACs':>12}  front")
    for r in sorted(result["points"], key=lambda r: r.get(axis) or 1e9):
        if "error" in r:
            print(f"{r['name']:<22} failed: {r['error']}")
            continue
        mark = ("yes" if r["on_front"] else "") + (" chosen" if r["name"] == result["chosen"] else "")
        print(f"{r['name']:<22}{r['p50_ms']:>12.4f}{r['estimate_ms']:>12.3f}{r['accuracy']:>10.2f}"
              f"{r['accuracy_drop']:>7.2f}{r['bytes']:>10,}{r['macs']:>12,}  {mark}")
    unpruned = next((r for r in result["points"] if r["name"] == "p00-tflite-int8"), None)
    faster = [r for r in result["points"] if unpruned and r["prune"] != 0 and r.get("within_budget")
              and r[axis] < unpruned[axis]]
    if unpruned:
        print(f"pruned points faster than p00-tflite-int8 ({unpruned[axis]:.3f} ms) within the budget: "
              + (", ".join(f"{r['name']} ({r[axis]:.3f} ms, {unpruned[axis] / r[axis]:.2f}x)" for r in faster)
                 or "none"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mnist_cnn,mnist_resnet")
    parser.add_argument("--prune", default="0,0.25,0.5")
    parser.add_argument("--quantize", default="float32,int8")
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    prunes, variants = parse_prunes(args.prune), args.quantize.split(",")
    engines = [(1, "local"), (2, "local")] + ([] if args.no_ray else [(2, "ray")])
    with tempfile.TemporaryDirectory(prefix="edgekiln-bench-sweep-") as work:
        for model in args.models.split(","):
            walls = {}
            for jobs, executor in engines:
                result, wall = _sweep(model, Path(work) / f"{model}-{jobs}-{executor}", prunes, variants, jobs,
                                      executor)
                walls[f"{executor} --jobs {jobs}"] = wall
                if (jobs, executor) == (1, "local"):
                    _print_front(model, result)
            one = walls["local --jobs 1"]
            print("wall time: " + ", ".join(f"{name} {s:.0f} s ({one / s:.2f}x)" for name, s in walls.items()))


if __name__ == "__main__":
    main()
