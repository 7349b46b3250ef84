"""Reconstruction alone recovers an ONNX export of the residual sample pruned at 0.3 (no training)."""

from __future__ import annotations

import numpy as np
import pytest

from edgekiln.compiler.data import Datasets
from edgekiln.compiler.graph import onnx_recover
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.pruning_stage import prune_onnx
from edgekiln.compiler.recipe import Recipe
from tests.conftest import SAMPLES

pytestmark = pytest.mark.integration


def _onnx_sample():
    """The residual sample exported by tf2onnx (NCHW convolutions, BatchNormalization folded into them)."""
    import tf2onnx

    from edgekiln.compiler.tf_env import import_keras, import_tf, quiet_fds

    keras, tf = import_keras(), import_tf()
    model = keras.models.load_model(SAMPLES / "mnist_resnet.keras", compile=False)
    with quiet_fds():
        proto, _ = tf2onnx.convert.from_keras(
            model, input_signature=(tf.TensorSpec((None, 28, 28, 1), tf.float32, name="image"),), opset=17)
    return proto


def test_reconstruct_keeps_the_onnx_sample_within_two_points_at_ratio_03():
    proto = _onnx_sample()
    calib = np.load(SAMPLES / "mnist_calib.npz")["x"][:256].astype(np.float32)
    with np.load(SAMPLES / "mnist_eval.npz") as ev:
        x, y = ev["x"].astype(np.float32), ev["y"]
    data = Datasets(Dataset({"image": calib}, None, "calib"), Dataset({"image": x}, y, "eval"))
    pruned, block = prune_onnx(proto, Recipe(source="m.onnx", quantize="none", prune=0.3), data, lambda s: None)
    unpruned = float(np.mean(onnx_recover.run(proto, x)[0].argmax(1) == y) * 100)
    after = float(np.mean(onnx_recover.run(pruned, x)[0].argmax(1) == y) * 100)
    accuracy = block["accuracy"]
    assert accuracy["reference"] == pytest.approx(unpruned) and accuracy["after_recovery"] == pytest.approx(after)
    assert accuracy["before_recovery"] < unpruned - 20  # pruning alone wrecks it ...
    assert after >= unpruned - 2.0, accuracy             # ... least squares brings it back
    assert block["recovery"]["steps"][0]["layers"] == 9 and block["macs_ratio"] < 0.55
    assert len(block["groups"]) == 6 and block["blocked"][0]["reasons"][0].startswith("Softmax")
