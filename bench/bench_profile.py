"""The LiteRT per-op profiler (runtime/profile.py) before and after it timed models in blocks of BLOCK ops:
wall and CPU seconds of one profile of a chain of N ops, old beside new, and each one's sum of op times over
the whole model's time (the check that the cut models time like the whole one).

    python bench/bench_profile.py [--ops 64 128 256] [--width 128] [--runs 10]

Old: every prefix of the whole model, each packed with every tensor and weight, timed every round (a round
runs op k once per later prefix: n^2 / 2 op runs); it is read from git (OLD_COMMIT). New: prefixes of blocks of
BLOCK ops, each block a model of its own tensors fed what the whole model computes there (32 runs per op at
most). The models are tests/unit/runtime/chain_model.py's (FULLY_CONNECTED and ADD in turn, float32, 1 thread,
--runs rounds a batch as a build profiles: compiler/profile/stage.BUILD_RUNS). Times are this host's, under its
load: the ratios are the figure.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import edgekiln.runtime.backends  # noqa: E402,F401  (the old module's relative import resolves against it)
from edgekiln.runtime import profile as new  # noqa: E402
from tests.unit.runtime.chain_model import chain_model  # noqa: E402

OLD_COMMIT = "00de7ee"  # the last commit with the whole-model prefixes


def old_profiler(folder: Path) -> ModuleType:
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{OLD_COMMIT}:runtime/profile.py"],
                            capture_output=True, text=True, check=True).stdout
    (folder / "old_profile.py").write_text(source)
    spec = importlib.util.spec_from_file_location("edgekiln.runtime._old_profile", folder / "old_profile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(module: ModuleType, model: bytes, feeds: list, runs: int) -> tuple[float, float, float]:
    """(wall s, CPU s, sum of the ops / whole) of one profile."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = module.profile("tflite", model, 1, feeds, runs)
    return time.perf_counter() - wall, time.process_time() - cpu, result["sum_ms"] / result["total_ms"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        old = old_profiler(Path(scratch))
        print(f"{'ops':>5} {'old wall s':>11} {'new wall s':>11} {'ratio':>6} {'old CPU s':>10} {'new CPU s':>10} "
              f"{'ratio':>6} {'old sum/whole':>14} {'new sum/whole':>14}")
        for ops in args.ops:
            model, feeds = chain_model(ops, args.width), [np.ones((1, args.width), np.float32)]
            o, n = timed(old, model, feeds, args.runs), timed(new, model, feeds, args.runs)
            print(f"{ops:>5} {o[0]:>11.2f} {n[0]:>11.2f} {o[0] / n[0]:>5.1f}x {o[1]:>10.2f} {n[1]:>10.2f} "
                  f"{o[1] / n[1]:>5.1f}x {o[2]:>14.2f} {n[2]:>14.2f}")


if __name__ == "__main__":
    main()
