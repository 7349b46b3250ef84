"""Big inputs (issue 38, deliverable 6): an ONNX model whose external data passes protobuf's 2 GB is refused in one
line before its weights are read (a sparse external-data file: cheap to make, 2.2 GB by its length); calibration
data of 1 GB (.npy) build under a 400 MB memory limit, read memory-mapped in batches (compiler/batches.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from edgekiln.compiler.data import CROSS_FITTED
from tests.integration.faults import build_env, one_line_error, write_mlp

pytestmark = pytest.mark.integration
BIG = 2_200_000_000  # bytes of weights, stored beside the model


def _with_external_weights(mlp: dict[str, Path], size: int) -> Path:
    """The MLP plus one float32 initializer of `size` bytes in big.bin (a sparse file: no disk, no time)."""
    model = onnx.load(str(mlp["model"]))
    tensor = model.graph.initializer.add()
    tensor.name, tensor.data_type = "big", TensorProto.FLOAT
    tensor.dims.append(size // 4)
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "big.bin"), ("offset", "0"), ("length", str(size))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    folder = mlp["model"].parent
    with open(folder / "big.bin", "wb") as f:
        f.truncate(size)
    onnx.save(model, str(folder / "big.onnx"))
    return folder / "big.onnx"


# A small launcher measures the build: a child forked from this pytest worker starts with the worker's own
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


def _measured(command: list[str], env: dict[str, str], limit_mb: int = 0) -> tuple[subprocess.CompletedProcess, float]:
    """`command` run under RLIMIT_DATA `limit_mb` (0: none), and the peak RSS (MB) of its process, from the kernel's
    accounting (wait4), taken by a small launcher process (MEASURE)."""
    with tempfile.TemporaryDirectory() as scratch:
        peak = Path(scratch) / "peak_kb"
        done = subprocess.run([sys.executable, "-c", MEASURE, str(peak), str(limit_mb), *command], env=env,
                              capture_output=True, text=True)
        return done, int(peak.read_text()) / 1024


def _build_measured(args: list[str], env: dict[str, str], limit_mb: int = 0) -> tuple[subprocess.CompletedProcess,
                                                                                       float]:
    return _measured([sys.executable, "-m", "edgekiln.compiler.cli", "build", *args], env, limit_mb)


def test_an_onnx_model_over_2_gb_is_refused_in_one_line_without_reading_it(tmp_path):
    mlp = write_mlp(tmp_path)
    model = _with_external_weights(mlp, BIG)
    assert os.stat(tmp_path / "big.bin").st_blocks * 512 < 2**20  # sparse: nothing was written
    done, peak_mb = _build_measured([str(model), "-t", "rpi4", "--calib", str(mlp["calib"]), "-o",
                                     str(tmp_path / "out"), "--format", "onnx"], build_env(tmp_path / "tmp"))
    assert done.returncode == 1
    assert one_line_error(done).startswith("error: big.onnx holds 2.0 GB of graph and weights, over the 2 GB that "
                                           "one ONNX protobuf can hold")
    assert peak_mb < 1024, peak_mb  # the 2 GB of weights were never read into memory
    assert not (tmp_path / "out").exists()


LIMIT_MB = 400  # RLIMIT_DATA of the build: a small ONNX build needs about 180 MB resident
WIDE = 65_536  # features a sample (256 KB): 4,096 samples make 1 GB, few enough that the judge's per-sample runs
# (the model is compiled for batch 1) stay quick


def _wide_mlp(folder: Path) -> Path:
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


def _sparse_npy(path: Path, samples: int) -> Path:
    """A float32 [samples, WIDE] .npy whose first 256 samples are random and the rest a hole in the file: 1 GB by
    its length, a few MB on disk."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(samples, WIDE))
    array[:256] = np.random.default_rng(1).normal(size=(256, WIDE)).astype(np.float32)
    array.flush()
    del array
    return path


def test_calibration_data_larger_than_the_memory_limit_build_read_in_batches(tmp_path):
    model, data = _wide_mlp(tmp_path), _sparse_npy(tmp_path / "big.npy", 4096)
    assert data.stat().st_size > 2.5 * LIMIT_MB * 2**20 and os.stat(data).st_blocks * 512 < 2**28
    env = build_env(tmp_path / "tmp")
    # the limit is real: reading the file whole (what the loader did before) fails under it
    whole, _ = _measured([sys.executable, "-c", f"import numpy; numpy.load({str(data)!r})"], env, LIMIT_MB)
    assert whole.returncode != 0 and "MemoryError" in whole.stderr
    done, peak_mb = _build_measured([str(model), "-t", "rpi4", "--calib", str(data), "--calib-samples", "64",
                                     "--quantize", "int8", "--format", "onnx", "--runs", "5", "-o",
                                     str(tmp_path / "out")], env, LIMIT_MB)
    assert done.returncode == 0, done.stderr[-3000:]
    assert peak_mb < LIMIT_MB, peak_mb  # 1 GB of data, 16 MB batches
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    # 64 samples calibrated; every sample judged, cross-fitted: each fold model ran over its 2,048 held-out samples
    used = manifest["quantization"]["data"]
    assert (used["calibration_samples"], used["judging_samples"], used["judged_by"]) == (64, 4096, CROSS_FITTED)
    assert manifest["fidelity"]["samples"] == 4096
