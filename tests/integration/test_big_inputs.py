"""Big inputs (issue 38, deliverable 6): an ONNX model whose external data passes protobuf's 2 GB is refused in one
line before its weights are read (a sparse external-data file: cheap to make, 2.2 GB by its length)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto

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
MEASURE = """
import os, subprocess, sys
process = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(process.pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _build_measured(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    """`edgekiln build ARGS` and the peak RSS (MB) of its process, from the kernel's accounting (wait4), taken by a
    small launcher process (MEASURE)."""
    with tempfile.TemporaryDirectory() as scratch:
        peak = Path(scratch) / "peak_kb"
        done = subprocess.run([sys.executable, "-c", MEASURE, str(peak), sys.executable, "-m",
                               "edgekiln.compiler.cli", "build", *args], env=env, capture_output=True, text=True)
        return done, int(peak.read_text()) / 1024


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
