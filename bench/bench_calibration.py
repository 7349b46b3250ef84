"""The TFLite entropy (KL) calibration's threshold search, old (one loop step per clip point, kept in
tests/unit/emit/test_entropy_rows.py as the reference) beside new (calibrate._entropy, every clip point in one
flat array): CPU seconds of each over the same histograms, their ratio, and how many choices differ.

    python bench/bench_calibration.py [--tensors 180] [--stats FILE.pkl]

The histograms are |x| of random heavy-tailed activations (Student t), half signed (128 levels) and half not
(256). --stats reads a pickled {index: TensorStats} as calibrate.collect returns it instead (the intent
encoder's, whose histograms are denser, gain less). CPU time (time.process_time), so another job's load counts less.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgekiln.compiler.emit.calibrate import BINS, _entropy  # noqa: E402
from tests.unit.emit.test_entropy_rows import _reference  # noqa: E402  (the previous implementation)


def histograms(count: int, seed: int = 0) -> list[tuple[np.ndarray, int]]:
    """(histogram, levels) of `count` random activation tensors of 64 samples each."""
    rng = np.random.default_rng(seed)
    made = []
    for i in range(count):
        x = np.abs(rng.standard_t(int(rng.integers(3, 30)), 64 * int(rng.integers(500, 4000))))
        made.append((np.histogram(x, bins=BINS, range=(0.0, float(x.max())))[0], 128 if i % 2 else 256))
    return made


def from_stats(path: Path) -> list[tuple[np.ndarray, int]]:
    stats = pickle.loads(path.read_bytes())
    return [(s.hist, 128 if s.lo < 0 else 256) for s in stats.values() if s.internal and s.hist.sum() > 0]


def cpu_seconds(search: object, cases: list[tuple[np.ndarray, int]]) -> tuple[float, list[int]]:
    start = time.process_time()
    chosen = [search(hist, levels) for hist, levels in cases]  # type: ignore[operator]
    return time.process_time() - start, chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tensors", type=int, default=180)
    parser.add_argument("--stats", type=Path, help="a pickled {index: TensorStats} (calibrate.collect)")
    args = parser.parse_args()
    cases = from_stats(args.stats) if args.stats else histograms(args.tensors)
    _entropy(*cases[0])  # the clip grids are built once per level count: not part of the comparison
    _entropy(np.ones(BINS, np.int64), 128 if cases[0][1] == 256 else 256)
    old_s, old = cpu_seconds(_reference, cases)
    new_s, new = cpu_seconds(_entropy, cases)
    differ = sum(a != b for a, b in zip(old, new, strict=True))
    print(f"{len(cases)} tensors   old {old_s:.2f} s CPU   new {new_s:.2f} s CPU   old/new {old_s / new_s:.2f}x   "
          f"choices that differ: {differ}")


if __name__ == "__main__":
    main()
