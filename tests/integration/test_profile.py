"""`edgekiln profile`: per-op time measured through the runtime (LiteRT prefix differences, onnxruntime's
profiler), on small models built here. The assertions are structural (which op dominates, where an op runs,
the sum beside the whole), with margins no CPU's speed decides."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekiln.compiler.profile import AGREEMENT, profile_model
from tests import synthetic

pytestmark = pytest.mark.integration


def _dominant_macs(keras):
    """A 1x1 conv (65 k MACs), then a 3x3 conv with 4.7 M MACs (~98 % of them), GAP, Dense."""
    keras.utils.set_random_seed(3)
    inp = keras.Input((32, 32, 8), name="image")
    x = keras.layers.Conv2D(8, 1, name="small")(inp)
    x = keras.layers.Conv2D(64, 3, padding="same", name="big")(x)
    out = keras.layers.Dense(10, name="head")(keras.layers.GlobalAveragePooling2D(name="gap")(x))
    return keras.Model(inp, out)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """float32 TFLite and ONNX of the dominant-MACs model; int8 TFLite of a PReLU model (PReLU int8 is not in
    XNNPACK) whose convs are cheap: PReLU on 64x64x16 tensors, a 3x3 conv of 16 channels."""
    import tf2onnx

    from edgekiln.compiler.emit.tflite_convert import convert
    from edgekiln.compiler.model_inputs import Dataset
    from edgekiln.compiler.recipe import Quantize
    from edgekiln.compiler.tf_env import import_keras, import_tf

    keras, tf = import_keras(), import_tf()
    root = tmp_path_factory.mktemp("profile")
    dominant = _dominant_macs(keras)
    dominant.export(str(root / "dominant"), verbose=False)
    x = np.random.default_rng(0).random((1, 32, 32, 8), dtype=np.float32)
    onnx_model, _ = tf2onnx.convert.from_keras(dominant, [tf.TensorSpec((1, 32, 32, 8), tf.float32, name="image")],
                                               opset=17)
    prelu, px = synthetic.activation(keras, "prelu", size=64, filters=(16,))
    prelu.export(str(root / "prelu"), verbose=False)
    return {"dominant": convert(root / "dominant", Quantize.none, None), "x": x,
            "dominant_onnx": onnx_model.SerializeToString(),
            "prelu": convert(root / "prelu", Quantize.int8, Dataset({"image": px[:64]}, None, "test"), int8_io=False),
            "px": px[:1]}


@pytest.fixture(scope="module")
def profiles(models):
    return {"dominant": profile_model("tflite", models["dominant"], 1, [models["x"]]),
            "dominant_onnx": profile_model("onnx", models["dominant_onnx"], 1, [models["x"]]),
            "prelu": profile_model("tflite", models["prelu"], 1, [models["px"]])}


@pytest.mark.parametrize("name", ["dominant", "dominant_onnx"])
def test_the_op_that_dominates_macs_dominates_time(profiles, name):
    ops = profiles[name]["ops"]
    known = [op for op in ops if op["macs"] is not None]  # a row the profiler could not match has MACs unknown
    heaviest = max(known, key=lambda op: op["macs"])
    assert heaviest["macs"] > 0.9 * sum(op["macs"] for op in known)
    assert ops[0] is heaviest, [(op["op"], op["layer"], op["ms"]) for op in ops]
    assert heaviest["share"] > 0.4 and heaviest["hot"]


def test_an_int8_op_outside_the_fast_path_is_named_the_top_cost(profiles):
    ops = profiles["prelu"]["ops"]
    top = ops[0]
    assert top["op"] == "PRELU" and top["fast_path"] is False and top["dtype"] == "int8", ops[:3]
    assert all(op["fast_path"] for op in ops if op["op"] in ("CONV_2D", "DEPTHWISE_CONV_2D"))


@pytest.mark.parametrize("name", ["dominant", "dominant_onnx", "prelu"])
def test_the_ops_add_up_to_the_measured_whole(profiles, name):
    profile = profiles[name]
    assert abs(profile["sum_ms"] / profile["total_ms"] - 1) <= AGREEMENT, profile["agreement"]
    assert profile["agreement"]["within"]
    assert abs(sum(op["share"] for op in profile["ops"]) - 1) < 0.01


def test_rows_carry_the_static_facts_and_the_target_estimate(models):
    from edgekiln import targets

    profile = profile_model("tflite", models["dominant"], 1, [models["x"]], targets.load("rpi4"), runs=5)
    big = next(op for op in profile["ops"] if op["layer"] == "big")
    assert big["macs"] == 32 * 32 * 64 * 9 * 8 and big["params"] == 64 * 9 * 8 + 64
    assert big["weight_bytes"] == 4 * big["params"] and big["dtype"] == "float32"
    assert big["estimate_ms"] > 0 and profile["estimate"]["method"] == "estimate"
    assert set(big) >= {"name", "op", "layer", "ms", "share", "macs", "params", "weight_bytes", "dtype", "fast_path"}


def test_a_bundle_and_its_source_profile_the_same_op_list(cli, tiny, tmp_path):
    from edgekiln.compiler.commands.profile import run_profile

    built = cli("build", tiny["keras"], "--calib", tiny["calib"], "-q", "none", "-o", tmp_path / "b", "--runs", "5")
    assert built.exit_code == 0, built.stderr
    assert "where the time goes" in built.stdout
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert set(manifest["profile"]) >= {"method", "total_ms", "sum_ms", "agreement", "ops"}
    result = cli("profile", tmp_path / "b", "--json", tmp_path / "bundle.json", "--runs", "5")
    assert result.exit_code == 0, result.stderr
    bundle = json.loads((tmp_path / "bundle.json").read_text())
    source = run_profile(tiny["keras"], "rpi4", tiny["calib"], None, 5, None, 5, quantize="none")
    in_order = [sorted((op["index"], op["name"], op["op"]) for op in p["ops"]) for p in (bundle, source)]
    assert in_order[0] == in_order[1] and len(in_order[0]) >= 5
    assert [op["name"] for op in manifest["profile"]["ops"]][:3] and \
        {op["name"] for op in manifest["profile"]["ops"]} <= {op["name"] for op in bundle["ops"]}


def test_profiling_a_missing_path_is_one_line(cli, tmp_path):
    result = cli("profile", tmp_path / "nothing.tflite")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nothing.tflite'} does not exist (pass a bundle directory, a .tflite file or a source "
        "model)"]
