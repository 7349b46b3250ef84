"""Ops without a TFLite builtin, or without an int8 kernel, are named to the user."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.integration


def _saved_model_with(tmp_path, op_name: str):
    """A SavedModel Dense -> <op> -> Dense (SavedModel: the custom layer's code is not needed to load it)."""
    from edgekiln.compiler.tf_env import import_keras

    keras = import_keras()
    op = getattr(keras.ops, op_name)

    class Elementwise(keras.layers.Layer):
        def call(self, t):
            return op(t)

    inp = keras.Input((8,), name="x")
    model = keras.Model(inp, keras.layers.Dense(4)(Elementwise()(keras.layers.Dense(8)(inp))))
    path = tmp_path / f"{op_name}_savedmodel"
    model.export(str(path), verbose=False)
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(0).random((24, 8), dtype=np.float32))
    return path, tmp_path / "calib.npz"


def test_op_without_builtin_kernel_is_named(cli, tmp_path):
    model, calib = _saved_model_with(tmp_path, "erf")
    result = cli("build", model, "--calib", calib, "-o", tmp_path / "out", "--runs", "5", "--format", "tflite")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: TensorFlow op(s) Erf have no TFLite builtin kernel (they would need TF Select, which LiteRT on the "
        "device does not have) (replace them in the model with supported ops, or use --format onnx if available)"]
    assert not (tmp_path / "out").exists()


def test_formats_compared_ship_the_format_that_converts_and_say_why_the_other_failed(cli, tmp_path):
    model, calib = _saved_model_with(tmp_path, "erf")
    result = cli("build", model, "--calib", calib, "-o", tmp_path / "out", "--runs", "5")  # --format auto
    assert result.exit_code == 0, result.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["model"]["format"] == "onnx"
    assert "Erf have no TFLite builtin kernel" in manifest["quantization"]["formats"]["failed"]["tflite"]
    assert "tflite not compared: " in result.stdout


def test_op_left_in_float_by_int8_is_reported(cli, tmp_path):
    model, calib = _saved_model_with(tmp_path, "sin")
    result = cli("build", model, "--calib", calib, "-o", tmp_path / "out", "--runs", "5", "--quantize", "int8")
    assert result.exit_code == 0, result.stderr
    assert "WARNING" in result.stdout and "SIN" in result.stdout
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["quantization"]["float_ops"] == ["SIN"]
    assert any("SIN" in w for w in manifest["warnings"])
