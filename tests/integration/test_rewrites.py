"""Each rewrite pass on a tiny model of its own: exact ones leave the float outputs unchanged within 1e-5."""

from __future__ import annotations

import numpy as np
import pytest

from edgekiln.compiler.rewrite import (
    EXACT_TOLERANCE,
    apply,
    bias_correction,
    bn_act,
    equalize,
    fold_bn,
    relative_diff,
    shift_forward,
)
from edgekiln.compiler.rewrite.work import WorkingModel, output_ranges

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def keras():
    from edgekiln.compiler.tf_env import import_keras

    return import_keras()


def _x(shape, seed=0):
    return np.random.default_rng(seed).random((16, *shape), dtype=np.float32)


def _set_bn(bn, rng, spread=1.0, negative=False):
    n = bn.get_weights()[0].shape[0]
    gamma = np.logspace(-np.log10(spread) / 2, np.log10(spread) / 2, n) if spread > 1 else rng.uniform(0.5, 2, n)
    gamma = gamma * (np.where(np.arange(n) % 2, -1, 1) if negative else 1)
    bn.set_weights([gamma.astype(np.float32), rng.normal(0, 0.3, n).astype(np.float32),
                    rng.normal(0, 0.3, n).astype(np.float32), rng.uniform(0.5, 2, n).astype(np.float32)])


def _run(pass_fn, model):
    work = WorkingModel(model)
    notes = pass_fn(work)
    return work.to_keras(), notes


def _passes(model, *passes):
    """The rebuilt model, the notes of every pass in turn, and what they left and why."""
    work = WorkingModel(model)
    notes = [note for run in passes for note in run(work)]
    return work.to_keras(), notes, work.skipped


def test_fold_bn_into_conv_dense_and_depthwise(keras):
    rng = np.random.default_rng(0)
    layers = keras.layers
    inp = keras.Input((8, 8, 3))
    x = layers.BatchNormalization(name="bn1")(layers.Conv2D(6, 3, padding="same", use_bias=False)(inp))
    x = layers.ReLU()(x)
    x = layers.BatchNormalization(name="bn2")(layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(x))
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.BatchNormalization(name="bn3")(layers.Dense(4)(x))
    model = keras.Model(inp, out)
    for name in ("bn1", "bn2", "bn3"):
        _set_bn(model.get_layer(name), rng)
    rewritten, notes = _run(fold_bn.run, model)
    assert len(notes) == 3 and all(n.startswith("folded bn") for n in notes)
    assert relative_diff(model, rewritten, _x((8, 8, 3))) < EXACT_TOLERANCE
    folded = WorkingModel(rewritten)
    assert all(folded.layers[n].weights["moving_mean"].max() == 0 for n in ("bn1", "bn2", "bn3"))
    assert fold_bn.run(folded) == []  # nothing left to fold


def _act_bn_model(keras, activation, next_kernel, spread=1000.0, negative=False):
    rng = np.random.default_rng(1)
    layers = keras.layers
    inp = keras.Input((8, 8, 3))
    x = activation(layers.Conv2D(8, 3, padding="same", name="conv1")(inp))
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.Conv2D(5, next_kernel, padding="same", name="conv2")(x)
    model = keras.Model(inp, layers.GlobalAveragePooling2D()(x))
    _set_bn(model.get_layer("bn"), rng, spread, negative)
    return model


@pytest.mark.parametrize("act", ["relu", "prelu", "leaky"])
def test_bn_after_an_activation_moves_its_scale_back_and_its_shift_forward(keras, act):
    make = {"relu": lambda: keras.layers.ReLU(), "leaky": lambda: keras.layers.LeakyReLU(0.1),
            "prelu": lambda: keras.layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25))}[act]
    model = _act_bn_model(keras, lambda t: make()(t), next_kernel=1)
    rewritten, notes, skipped = _passes(model, bn_act.run, shift_forward.run)
    assert notes == ["moved bn's scale into conv1", "moved bn's shift into conv2's bias"] and skipped == []
    assert relative_diff(model, rewritten, _x((8, 8, 3))) < EXACT_TOLERANCE
    assert WorkingModel(rewritten).layers["bn"].identity  # neither scale nor shift left: the converter drops it
    assert output_ranges(WorkingModel(rewritten).layers["conv1"]).max() > \
        100 * output_ranges(WorkingModel(model).layers["conv1"]).max() / 1000  # the scales live in conv1 now


def test_the_shift_stays_where_zero_padding_would_change_it(keras):
    model = _act_bn_model(keras, lambda t: keras.layers.ReLU()(t), next_kernel=3)
    rewritten, notes, skipped = _passes(model, bn_act.run, shift_forward.run)
    assert notes == ["moved bn's scale into conv1"]
    assert skipped == ["bn: its shift stays: Conv2D 'conv2' pads with zeros ('same' padding, 3x3 kernel): its border "
                       "would see 0 where the shifted input had the shift"]
    assert relative_diff(model, rewritten, _x((8, 8, 3))) < EXACT_TOLERANCE
    shift = WorkingModel(rewritten).layers["bn"]
    assert shift.config["scale"] is False and "gamma" not in shift.weights


def test_negative_bn_scales_keep_their_sign_in_the_bn(keras):
    """s = sign |s|: |s| passes back through ReLU, the sign does not (relu(-z) != -relu(z))."""
    model = _act_bn_model(keras, lambda t: keras.layers.ReLU()(t), next_kernel=1, negative=True)
    rewritten, notes, _ = _passes(model, bn_act.run, shift_forward.run)
    assert notes == ["moved bn's scale into conv1; the sign of its 4 negative scale(s) stays in it",
                     "moved bn's shift into conv2's bias"]
    assert relative_diff(model, rewritten, _x((8, 8, 3))) < EXACT_TOLERANCE
    sign = WorkingModel(rewritten).layers["bn"]
    assert sorted(set(sign.weights["gamma"].tolist())) == [-1.0, 1.0] and "beta" not in sign.weights


def test_relu6_is_left_with_its_reason(keras):
    model = _act_bn_model(keras, lambda t: keras.layers.ReLU(6.0, name="relu6")(t), next_kernel=1)
    rewritten, notes, skipped = _passes(model, bn_act.run, shift_forward.run)
    assert notes == [] and skipped[0].startswith("bn: ReLU 'relu6' caps its output: s*relu6(z) = min(relu(s*z), 6s)")


def _cifar_like(keras, consumer):
    """Sequential conv -> ReLU -> MaxPool -> BN -> Dropout -> MaxPool -> <consumer> (valid padding)."""
    layers = keras.layers
    tail = {"dense": [layers.Flatten(name="flat"), layers.Dropout(0.5), layers.Dense(4, name="next")],
            "reshape": [layers.Reshape((9, 6), name="reshape"), layers.Dense(4, name="next"), layers.Flatten()],
            "depthwise": [layers.DepthwiseConv2D(2, depth_multiplier=2, name="next"), layers.Flatten()],
            "separable": [layers.SeparableConv2D(5, 2, depth_multiplier=2, name="next"), layers.Flatten()]}[consumer]
    model = keras.Sequential([keras.Input((14, 14, 3)), layers.Conv2D(6, 3, name="conv1"),
                              layers.Activation("relu"), layers.MaxPooling2D(name="pool"),
                              layers.BatchNormalization(name="bn"), layers.Dropout(0.2),
                              layers.MaxPooling2D(), *tail])
    _set_bn(model.get_layer("bn"), np.random.default_rng(2), spread=300.0)
    return model


@pytest.mark.parametrize("consumer", ["dense", "reshape", "depthwise", "separable"])
def test_bn_rewrites_reach_through_pools_dropout_flatten_and_reshape(keras, consumer):
    model = _cifar_like(keras, consumer)
    rewritten, notes, skipped = _passes(model, bn_act.run, shift_forward.run)
    assert notes == ["moved bn's scale into conv1", "moved bn's shift into next's bias"] and skipped == []
    assert relative_diff(model, rewritten, _x((14, 14, 3))) < EXACT_TOLERANCE


def test_a_keras2_h5_sequential_is_not_taken_for_shared_layers(keras, tmp_path):
    """Keras 3 loads a Keras 2 .h5 Sequential by re-calling its layers: conv1 has many inbound nodes."""
    import subprocess
    import sys
    import textwrap

    path = tmp_path / "keras2.h5"
    subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import os
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        import tf_keras as keras
        L = keras.layers
        keras.Sequential([L.Conv2D(8, 3, input_shape=(10, 10, 3)), L.Activation("relu"), L.BatchNormalization(),
                          L.MaxPooling2D(), L.Dropout(0.2), L.Flatten(), L.Dense(4)]).save({str(path)!r})
    """)], check=True, capture_output=True)
    model = keras.models.load_model(path, compile=False)
    assert len(model.layers[0]._inbound_nodes) > 1  # noqa: SLF001  (what made every layer look shared)
    assert not WorkingModel(model).shared
    result = apply(model, _x((10, 10, 3)), correct_bias=False)
    assert [n.split(":")[0] for n in result.notes] == ["bn_through_activation"]  # a fresh BN has no shift
    assert result.exact_max_diff < EXACT_TOLERANCE


def test_equalize_balances_a_conv_pair_through_relu_shift_and_pooling(keras):
    model = _act_bn_model(keras, lambda t: keras.layers.ReLU()(t), next_kernel=3)
    work = WorkingModel(model)
    bn_act.run(work)  # conv1's channels now span 1000x, with a pure shift between conv1 and conv2
    shifted = work.to_keras()
    rewritten, notes = _run(equalize.run, shifted)
    assert len(notes) == 1 and notes[0].startswith("equalised conv1 -> conv2: channel range spread")
    ranges = output_ranges(WorkingModel(rewritten).layers["conv1"])
    assert ranges.max() / ranges.min() < 0.05 * (lambda r: r.max() / r.min())(
        output_ranges(WorkingModel(shifted).layers["conv1"]))
    assert relative_diff(model, rewritten, _x((8, 8, 3))) < EXACT_TOLERANCE


def test_equalize_skips_balanced_pairs(keras):
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Conv2D(2, 1)(keras.layers.MaxPooling2D()(x)))
    assert _run(equalize.run, model)[1] == []


def test_bias_correction_cancels_the_mean_shift_of_int8_weights(keras):
    """Not exact by design: in float it moves the outputs by minus the expected int8 rounding error."""
    rng = np.random.default_rng(3)
    inp = keras.Input((16,))
    hidden = keras.layers.Dense(32, activation="relu", name="hidden")(inp)
    model = keras.Model(inp, keras.layers.Dense(8, name="out")(hidden))
    kernel, bias = model.get_layer("out").get_weights()
    kernel[:, 0] *= np.where(np.arange(32) == 0, 200.0, 1.0)  # one large weight: coarse int8 steps elsewhere
    model.get_layer("out").set_weights([kernel, bias])
    x = (rng.random((256, 16), dtype=np.float32) + 0.5).astype(np.float32)
    corrected, notes = bias_correction.run(model, x)
    assert notes[0].startswith("corrected the biases of 2 layers")

    def int8_weights(m):  # the model with TFLite-rounded weights, still float activations
        work = WorkingModel(m)
        for name in ("hidden", "out"):
            work.layers[name].weights["kernel"] = bias_correction.int8_weights(work.layers[name]).astype(np.float32)
        return work.to_keras()

    reference = model.predict(x, verbose=0).mean(axis=0)
    before = np.abs(int8_weights(model).predict(x, verbose=0).mean(axis=0) - reference).max()
    after = np.abs(int8_weights(corrected).predict(x, verbose=0).mean(axis=0) - reference).max()
    assert after < 0.2 * before


def test_apply_runs_the_exact_passes_then_bias_correction(keras):
    model = _act_bn_model(keras, lambda t: keras.layers.ReLU()(t), next_kernel=3)
    result = apply(model, _x((8, 8, 3)))
    passes = [note.split(":")[0] for note in result.notes]
    assert passes == ["bn_through_activation", "equalize", "bias_correction"]
    assert [why.split(":")[0] for why in result.not_applied] == ["shift_forward"]  # conv2 pads with zeros
    assert result.exact_max_diff < EXACT_TOLERANCE
    assert apply(model, _x((8, 8, 3)), correct_bias=False).notes[-1].startswith("equalize")


def test_a_model_that_reuses_a_layer_is_left_alone(keras):
    inp = keras.Input((4,))
    shared = keras.layers.Dense(4)
    model = keras.Model(inp, shared(shared(inp)))
    result = apply(model, np.ones((2, 4), np.float32))
    assert result.model is model and not result.changed
    assert result.not_applied == ("all: a layer is called more than once in the model",)
