"""keras_output (the pruning judge's and the encoder slimming's forward pass) runs the model's compiled predict
step batch by batch: the same figures as Keras' predict, bit for bit, including a last partial batch."""

from __future__ import annotations

import numpy as np
import pytest

from edgekiln.compiler.encoder_slimming import keras_output

pytestmark = pytest.mark.integration


def test_the_same_outputs_as_predict_bit_for_bit():
    import keras

    keras.utils.set_random_seed(4)
    inp = keras.Input((12,), name="x")
    hidden = keras.layers.Dense(16, activation="relu")(inp)
    model = keras.Model(inp, [keras.layers.Dense(5, name="logits")(hidden), keras.layers.Dense(1, name="aux")(hidden)])
    x = np.random.default_rng(4).normal(size=(300, 12)).astype(np.float32)  # one full batch of 256, one of 44
    expected = model.predict(x, batch_size=256, verbose=0)[0]  # the first output
    got = keras_output(model, x)
    assert got.shape == (300, 5)
    assert np.array_equal(got, expected)
