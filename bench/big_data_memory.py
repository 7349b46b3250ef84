"""Peak RSS of a build against the size of its calibration data (.npy, read memory-mapped in batches).

    python bench/big_data_memory.py [--sizes 64 256 1024 2048] [--quantize int8]

Each size is a sparse .npy of 256 KB samples (tests/integration/big_data.py) feeding `edgekiln build` of a wide
ONNX MLP (int8, ONNX, --calib-samples 64); the peak is the build process's ru_maxrss, taken by a small launcher.
Set EDGEKILN_ROOT to compare two trees. Figures are of this host and its load; the point is the ratio to the data.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.big_data import measured, sparse_npy, wide_mlp  # noqa: E402

SAMPLE_BYTES = 2**18


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024, 2048], help="data sizes in MB")
    parser.add_argument("--quantize", default="int8")
    args = parser.parse_args()
    print(f"{'data MB':>8} {'samples':>8} {'peak RSS MB':>12} {'peak / data':>12} {'wall s':>7}  result")
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            samples = size * 2**20 // SAMPLE_BYTES
            model, data = wide_mlp(folder), sparse_npy(folder / "big.npy", samples)
            started = time.monotonic()
            done, peak = measured([sys.executable, "-m", "edgekiln.compiler.cli", "build", str(model), "-t", "rpi4",
                                   "--calib", str(data), "--calib-samples", "64", "--quantize", args.quantize,
                                   "--format", "onnx", "--runs", "5", "-o", str(folder / "out")], dict(os.environ))
            result = "built" if done.returncode == 0 else done.stderr.strip().splitlines()[-1][:100]
            print(f"{size:>8} {samples:>8} {peak:>12.0f} {peak / size:>12.2f} {time.monotonic() - started:>7.0f}  "
                  f"{result}", flush=True)


if __name__ == "__main__":
    main()
