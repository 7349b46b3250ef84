"""Bad ONNX inputs through the real CLI: each gives one clear line on stderr and exit 1, writes nothing.

These fail before any converter runs, so no TensorFlow is imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto
from onnx_models import conv_net, save, single_op

ROOT = Path(__file__).resolve().parents[2]


def _build(tmp_path: Path, model: Path, data: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = tmp_path / "bundle"
    done = subprocess.run([sys.executable, "-m", "compiler", "build", str(model), "--target", "rpi4",
                           "--calib", str(data), "-o", str(out), *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
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
    assert "expected shape (N, 3, 8, 8), got (16, 8, 8, 3)" in line and "channels-first vs channels-last" in line
