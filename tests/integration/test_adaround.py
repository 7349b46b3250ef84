"""int8+adaround (emit/tflite_adaround.py): the converter's int8 TFLite with only its integer weights changed.

On a tiny conv / depthwise / dense model, the rewritten flatbuffer keeps every tensor's scales and zero points
and every other buffer; each weight moves one step at most from the converter's nearest rounding, and each
layer's output error on held-back calibration samples is below nearest rounding's. In a build, --quantize auto
tries it where plain int8 misses the criterion (the outlier model), and a bundle shipping it validates through
its runtime with AdaRound's integers in its file (read back through LiteRT). Latency is never asserted.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgekiln.compiler.commands.validate import run_validation
from edgekiln.compiler.pipeline import build
from edgekiln.compiler.recipe import Recipe
from tests import synthetic
from tests.choice_rule import assert_choice_obeys_rule

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def outlier(tmp_path_factory) -> dict:
    from edgekiln.compiler.tf_env import import_keras

    return synthetic.write(*synthetic.outlier(import_keras()), tmp_path_factory.mktemp("outlier"), "outlier")


def _tiny(tmp_path):
    """A conv -> depthwise (stride 2) -> 1x1 conv -> dense model, its calibrated and its int8 TFLite."""
    from edgekiln.compiler.emit import tflite_int8
    from edgekiln.compiler.model_inputs import Dataset
    from edgekiln.compiler.tf_env import import_keras, quiet_fds

    keras = import_keras()
    keras.utils.set_random_seed(0)
    layers, inp = keras.layers, keras.Input((12, 12, 3), name="image")
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = layers.DepthwiseConv2D(3, strides=2, padding="same")(x)
    out = layers.Dense(4)(layers.Flatten()(layers.Conv2D(8, 1, activation="relu")(x)))
    with quiet_fds():
        keras.Model(inp, out).export(str(tmp_path / "sm"), verbose=False)
    images = np.random.default_rng(0).random((32, 12, 12, 3), dtype=np.float32)
    calibrated = tflite_int8.calibrate(tmp_path / "sm", Dataset({"image": images}, None, "calib"))
    return calibrated, tflite_int8.quantize(calibrated, True), images


def test_only_the_integer_weights_change_one_step_at_most_and_held_back_error_drops(tmp_path):
    from tensorflow.lite.tools import flatbuffer_utils

    from edgekiln.compiler.emit import adaround, tflite_adaround
    from edgekiln.runtime import Model

    calibrated, plain, images = _tiny(tmp_path)
    feeds = [{"image": images[i : i + 1]} for i in range(len(images))]
    lines: list[str] = []
    rounded = tflite_adaround.refine(calibrated, plain, feeds, adaround.Settings(iterations=150, samples=16),
                                     lines.append)
    assert [r.op for r in rounded.layers] == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "FULLY_CONNECTED"]
    assert lines[0] == "AdaRound: the float inputs of 4 layer(s) on 32 samples"  # progress, then a line per layer
    assert lines[1:] == [f"AdaRound layer {i}/4: {r.op} {r.tensor}, 150 steps" for i, r in enumerate(rounded.layers, 1)]
    *convs, dense = rounded.layers
    for r in convs:  # held back: the 16 samples after the 16 it optimised on
        assert not r.kept and r.changed > 0 and r.held_back is not None and r.held_back < 1.0, r
    assert dense.kept == "16 input rows for 288 weights a channel: too few to learn from" and not dense.changed
    before, after = (flatbuffer_utils.convert_bytearray_to_object(bytearray(m)) for m in (plain, rounded.model))
    weights = {t.buffer for t in after.subgraphs[0].tensors
               if t.name.decode() in {r.tensor for r in convs}}
    for old, new in zip(before.subgraphs[0].tensors, after.subgraphs[0].tensors, strict=True):
        assert old.name == new.name and old.type == new.type
        scales = [(q.scale, q.zeroPoint) if q is not None else None for q in (old.quantization, new.quantization)]
        assert all(a is b or np.array_equal(a, b) for a, b in zip(*scales, strict=True)) if scales[0] else not scales[1]
    for index, (old, new) in enumerate(zip(before.buffers, after.buffers, strict=True)):
        a, b = (np.asarray(x.data if x.data is not None else [], np.uint8) for x in (old, new))
        if index in weights:
            step = np.abs(a.view(np.int8).astype(int) - b.view(np.int8).astype(int))
            assert step.max() == 1
        else:
            assert np.array_equal(a, b)
    model = Model("tflite", rounded.model)  # the runtime runs it
    assert model.predict(images[:4]).shape == Model("tflite", plain).predict(images[:4]).shape


def test_auto_tries_adaround_where_plain_int8_misses_the_criterion(outlier, tmp_path):
    manifest = build(Recipe(source=str(outlier["model"]), calib=str(outlier["calib"]), output=str(tmp_path / "a"),
                            bench_runs=5, format="tflite", target="rpi4")).manifest
    q = manifest["quantization"]
    rows = {row["name"]: row for row in q["candidates"]}
    assert rows["int8"]["sqnr_db"] < 10  # plain int8 misses: AdaRound is tried
    if "int8+adaround" in rows:
        assert any(n.startswith("AdaRound: ") for n in rows["int8+adaround"]["notes"])
    else:  # built, then dropped by the guard against what it refines, with the reason
        assert q["not_built"]["int8+adaround"].startswith("dropped: less faithful than int8+rewrites")
    assert_choice_obeys_rule(manifest)


@pytest.fixture(scope="module")
def plain_convs(tmp_path_factory) -> dict:
    """conv 3x3 -> ReLU -> conv 1x1 -> global pooling -> dense, glorot weights: no BN to fold and no channel range
    spread for equalisation to rescale, so the shipped float weights are the Keras model's own."""
    from edgekiln.compiler.tf_env import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(0)
    layers, inp = keras.layers, keras.Input((8, 8, 4), name="x")
    h = layers.Conv2D(16, 1, name="mix")(layers.Conv2D(16, 3, padding="same", activation="relu", name="conv")(inp))
    model = keras.Model(inp, layers.Dense(6, name="head")(layers.GlobalAveragePooling2D()(h)))
    x = np.random.default_rng(0).random((160, 8, 8, 4), dtype=np.float32)
    return synthetic.write(model, x, tmp_path_factory.mktemp("plain_convs"), "plain_convs") | {"keras": model}


def _shipped_weights(path, names: set[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The weight tensors `names` of a .tflite file as LiteRT reads them: name -> (integers, per-channel scales)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    return {d["name"]: (interp.get_tensor(d["index"]), d["quantization_parameters"]["scales"])
            for d in interp.get_tensor_details() if d["name"] in names}


def test_the_shipped_bundle_holds_adarounds_integers_and_validates(plain_convs, tmp_path):
    """The bundle's model.tflite, read back through LiteRT, holds AdaRound's integers: each one floor or ceil of
    the float weight over its scale, and exactly `changed` of each layer's away from nearest rounding (the
    converter's), as details.adaround reports; the bundle validates through its runtime."""
    manifest = build(Recipe(source=str(plain_convs["model"]), calib=str(plain_convs["calib"]),
                            output=str(tmp_path / "b"), bench_runs=5, format="tflite", target="rpi4",
                            variant="int8+adaround")).manifest
    q = manifest["quantization"]
    assert q["variant"] == "int8+adaround"
    facts = q["adaround"]
    assert facts["weights_changed"] > 0 and facts["held_back"] > 0
    assert [layer["op"] for layer in facts["layers"]] == ["CONV_2D", "CONV_2D", "FULLY_CONNECTED"]
    shipped = _shipped_weights(tmp_path / "b" / "model.tflite", {layer["tensor"] for layer in facts["layers"]})
    floats = {name: plain_convs["keras"].get_layer(name).get_weights()[0] for name in ("conv", "mix", "head")}
    as_stored = {name: w.transpose(3, 0, 1, 2) if w.ndim == 4 else w.T for name, w in floats.items()}  # [O, ...]
    for layer in facts["layers"]:
        ints, scales = shipped[layer["tensor"]]
        assert ints.dtype == np.int8, layer
        weights = next(w for w in as_stored.values() if w.shape == ints.shape).astype(np.float64)
        scaled = weights / scales.reshape(-1, *[1] * (ints.ndim - 1))
        assert np.all((ints == np.floor(scaled)) | (ints == np.floor(scaled) + 1)), layer
        assert int((ints != np.clip(np.round(scaled), -127, 127)).sum()) == layer["changed"], layer
    assert sum(layer["changed"] for layer in facts["layers"]) == facts["weights_changed"]
    report = run_validation(tmp_path / "b", None).report
    assert report["passed"], report
