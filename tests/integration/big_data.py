"""Helpers of the big-data checks (tests/integration/test_big_inputs.py, bench/big_data_memory.py): a build's peak
RSS taken by a small launcher under a memory limit, a wide ONNX MLP, and a sparse .npy of any size."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

# A small launcher measures the build: a child forked from a pytest worker starts with the worker's own
# resident pages (TensorFlow and every earlier test's models), and wait4's ru_maxrss counts them.
# argv: the file for the peak (KiB), RLIMIT_DATA in MB (0: none), the command. RLIMIT_DATA bounds the heap and
# private writable mappings, not a read-only file mapping (np.load's mmap_mode="r"); RLIMIT_AS would count the
# mapped file itself, and the address space onnxruntime's threads reserve.
MEASURE = """
import os, resource, subprocess, sys
limit = int(sys.argv[2]) * 2**20
process = subprocess.Popen(sys.argv[3:], preexec_fn=lambda: limit and resource.setrlimit(resource.RLIMIT_DATA,
                                                                                         (limit, limit)))
_, status, usage = os.wait4(process.pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def measured(command: list[str], env: dict[str, str], limit_mb: int = 0) -> tuple[subprocess.CompletedProcess, float]:
    """`command` run under RLIMIT_DATA `limit_mb` (0: none), and the peak RSS (MB) of its process, from the kernel's
    accounting (wait4), taken by a small launcher process (MEASURE)."""
    with tempfile.TemporaryDirectory() as scratch:
        peak = Path(scratch) / "peak_kb"
        done = subprocess.run([sys.executable, "-c", MEASURE, str(peak), str(limit_mb), *command], env=env,
                              capture_output=True, text=True)
        return done, int(peak.read_text()) / 1024


LIMIT_MB = 400  # RLIMIT_DATA of the build: a small ONNX build needs about 180 MB resident
WIDE = 65_536  # features a sample (256 KB): 4,096 samples make 1 GB, few enough that the judge's per-sample runs
# (the model is compiled for batch 1) stay quick


def wide_mlp(folder: Path) -> Path:
    """x [N, WIDE] -> Gemm 16 -> Relu -> Gemm 4 -> Softmax."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = {"w1": rng.normal(0, 0.01, (16, WIDE)), "b1": np.zeros(16), "w2": rng.normal(0, 0.3, (4, 16)),
               "b2": np.zeros(4)}
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["z"], transB=1),
             helper.make_node("Softmax", ["z"], ["y"], axis=1)]
    graph = helper.make_graph(nodes, "wide", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", WIDE])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), folder / "wide.onnx")
    return folder / "wide.onnx"


def sparse_npy(path: Path, samples: int) -> Path:
    """A float32 [samples, WIDE] .npy whose first 256 samples are random and the rest a hole in the file: 256 KB a
    sample by its length, 64 MB on disk."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(samples, WIDE))
    array[:256] = np.random.default_rng(1).normal(size=(256, WIDE)).astype(np.float32)
    array.flush()
    del array
    return path


