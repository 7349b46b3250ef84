"""Big inputs (issue 38, deliverable 6): an ONNX model whose external data passes protobuf's 2 GB is refused in one
line before its weights are read (a sparse external-data file: cheap to make, 2.2 GB by its length); calibration
data of 1 GB (.npy) build under a 400 MB memory limit, read memory-mapped in batches (compiler/batches.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto

from edgekiln.compiler.data import CROSS_FITTED
from tests.integration.big_data import LIMIT_MB, measured, sparse_npy, wide_mlp
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


def _build_measured(args: list[str], env: dict[str, str], limit_mb: int = 0) -> tuple[subprocess.CompletedProcess,
                                                                                       float]:
    return measured([sys.executable, "-m", "edgekiln.compiler.cli", "build", *args], env, limit_mb)


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


def test_calibration_data_larger_than_the_memory_limit_build_read_in_batches(tmp_path):
    model, data = wide_mlp(tmp_path), sparse_npy(tmp_path / "big.npy", 4096)
    assert data.stat().st_size > 2.5 * LIMIT_MB * 2**20 and os.stat(data).st_blocks * 512 < 2**28
    env = build_env(tmp_path / "tmp")
    # the limit is real: reading the file whole (what the loader did before) fails under it
    whole, _ = measured([sys.executable, "-c", f"import numpy; numpy.load({str(data)!r})"], env, LIMIT_MB)
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
