"""ONNX sources through the real CLI: `inspect`, and bad inputs that each give one clear line on
stderr and exit 1 and write nothing. All of it happens before any converter runs: no TensorFlow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto

from tests.unit.onnx_models import conv_net, save, single_op

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "edgekiln.compiler", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def _build(tmp_path: Path, model: Path, data: Path, *extra: str) -> subprocess.CompletedProcess:
    out = tmp_path / "bundle"
    done = _cli("build", str(model), "--target", "rpi4", "--calib", str(data), "-o", str(out), *extra)
    assert not out.exists(), "a failed build must not leave a bundle"
    return done


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    return lines[0]


@pytest.fixture
def nchw_calib(tmp_path: Path) -> Path:
    path = tmp_path / "calib_nchw.npz"
    np.savez(path, x=np.random.default_rng(0).random((16, 3, 8, 8), np.float32))
    return path


def test_non_onnx_file_named_onnx(tmp_path: Path, nchw_calib: Path) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_text("<html>not a model</html>\n" * 20)
    line = _one_error_line(_build(tmp_path, fake, nchw_calib))
    assert "model.onnx is not a readable ONNX model (truncated, or not an ONNX file)" in line


def test_truncated_onnx(tmp_path: Path, nchw_calib: Path) -> None:
    data = conv_net().SerializeToString()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) * 2 // 3])
    assert "cut.onnx is not a readable ONNX model" in _one_error_line(_build(tmp_path, cut, nchw_calib))


def test_op_onnxruntime_cannot_run(tmp_path: Path) -> None:
    model = save(single_op("Hardmax", dtype=TensorProto.DOUBLE), tmp_path / "hardmax.onnx")
    data = tmp_path / "x.npz"
    np.savez(data, x=np.ones((16, 4)))
    line = _one_error_line(_build(tmp_path, model, data, "--format", "onnx", "--quantize", "none"))
    assert "op Hardmax (version 13) has no onnxruntime" in line and "the device cannot run it" in line


def test_op_the_tflite_converter_lacks(tmp_path: Path) -> None:
    # CastLike runs in onnxruntime but onnx2tf has no converter for it: only --format tflite fails.
    model = save(single_op("CastLike", inputs=2), tmp_path / "castlike.onnx")
    data = tmp_path / "x.npz"
    np.savez(data, x=np.ones((16, 4), np.float32))
    line = _one_error_line(_build(tmp_path, model, data, "--format", "tflite", "--quantize", "none"))
    assert "op CastLike cannot be converted to TFLite" in line and "use --format onnx" in line


def test_calibration_data_in_the_wrong_layout(tmp_path: Path) -> None:
    model = save(conv_net(), tmp_path / "nchw.onnx")
    nhwc = tmp_path / "calib_nhwc.npz"
    np.savez(nhwc, x=np.random.default_rng(0).random((16, 8, 8, 3), np.float32))
    line = _one_error_line(_build(tmp_path, model, nhwc, "--format", "onnx"))
    assert "expected shape (N, 3, 8, 8), got (16, 8, 8, 3)" in line
    assert "channels-first vs channels-last" in line


def test_inspect_an_onnx_model(tmp_path: Path) -> None:
    done = _cli("inspect", str(save(conv_net(weights_as_constants=True), tmp_path / "c.onnx")))
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "ONNX opset 17" in text and "params 122, MACs 6,920 (batch 1)" in text
    assert "4 Constant nodes hold tensors (moved to initializers)" in text
    assert "[1, 3, 8, 8]" in text and "Conv x1" in text and "Gemm x1" in text
