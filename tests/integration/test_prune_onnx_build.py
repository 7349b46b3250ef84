"""`edgekiln build model.onnx --prune 0.3 --recover reconstruct`: pruning an ONNX source without training."""

from __future__ import annotations

import json

import pytest

from tests.conftest import SAMPLES
from tests.integration.conftest import run_runtime

pytestmark = pytest.mark.integration
# int8 through onnx2tf (its calibration is the slow part) is covered by test_onnx_matrix; pruning is what is here
QUANTIZE = {"onnx": ("--quantize", "int8", "--calibration", "minmax"), "tflite": ("--quantize", "none")}


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_onnx_source_pruned_and_reconstructed(cli, tmp_path, fmt):
    out = tmp_path / fmt
    result = cli("build", SAMPLES / "mnist_resnet_nchw.onnx", "--format", fmt, "--prune", "0.3", "--recover",
                 "reconstruct", "--calib", SAMPLES / "mnist_calib_nchw.npz", "--eval", SAMPLES / "mnist_eval_nchw.npz",
                 "-o", out, "--runs", "10", *QUANTIZE[fmt])  # one variant: the search is not under test
    assert result.exit_code == 0, result.stderr
    m = json.loads((out / "manifest.json").read_text())
    p = m["pruning"]
    assert p["recovery"]["method"] == "reconstruct"
    assert p["macs_after"] < 0.7 * p["macs_before"] and p["params_after"] < p["params_before"]
    assert p["accuracy"]["after_recovery"] >= p["accuracy"]["reference"] - 2.0  # no training at all
    assert p["measured"]["size_ratio"] < 0.8
    assert m["accuracy"]["drop"] <= 2.5
    assert run_runtime(out, "validate").returncode == 0
