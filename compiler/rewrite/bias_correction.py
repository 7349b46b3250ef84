"""Bias correction (Nagel et al. 2019): cancel the mean output shift that int8 weight rounding causes.

With int8 weights W_q = W + dW, a layer's output moves on average by dW E[x] (E[x]: the mean of each input
channel over the calibration data, measured in the float model). Subtracting that from the bias makes the
quantized layer right on average. This pass is NOT exact in float: it moves the float outputs by exactly
the expected rounding error, which the int8 model then adds back. The rounding copies TFLite's weights:
symmetric, per output channel, scale max|W| / 127.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edgekiln.compiler.rewrite.layer_state import LayerState
from edgekiln.compiler.rewrite.work import (
    PredictInputs,
    WorkingModel,
    bias,
    input_contribution,
    kernel_kind,
    out_view,
    set_kernel_and_bias,
)

if TYPE_CHECKING:
    from edgekiln.compiler.keras_types import KerasModel


def int8_weights(state: LayerState) -> np.ndarray:
    """The kernel after TFLite's symmetric per-output-channel int8 rounding, back in float."""
    view = out_view(state).astype(np.float64)
    scale = np.abs(view).reshape(-1, view.shape[-1]).max(axis=0) / 127.0
    scale[scale == 0] = 1.0
    rounded = np.clip(np.round(view / scale), -127, 127) * scale
    return rounded.reshape(state.weights["kernel"].shape)


def run(model: KerasModel, inputs: PredictInputs) -> tuple[KerasModel, list[str]]:
    """A new model with corrected biases (and a note), given calibration inputs as model.predict takes them."""
    work = WorkingModel(model)
    names = [n for n, s in work.layers.items() if kernel_kind(s) is not None]
    if not names:
        return model, []
    means = _input_means(model, names, inputs)
    largest = 0.0
    for name in names:
        state = work.layers[name]
        error = int8_weights(state) - state.weights["kernel"]
        shift = input_contribution(state, error, means[name])
        set_kernel_and_bias(state, out_view(state), bias(state) - shift)
        largest = max(largest, float(np.max(np.abs(shift))))
    return work.to_keras(), [f"corrected the biases of {len(names)} layers for int8 weight rounding "
                             f"(largest shift {largest:.2g})"]


def _input_means(model: KerasModel, names: list[str], inputs: PredictInputs) -> dict[str, np.ndarray]:
    """Mean of every input channel of each named layer over the calibration samples."""
    import keras

    probe = keras.Model(model.inputs, [model.get_layer(n).input for n in names])
    values = probe.predict(inputs, verbose=0, batch_size=32)
    values = values if isinstance(values, list) else [values]
    return {n: v.reshape(-1, v.shape[-1]).mean(axis=0) for n, v in zip(names, values, strict=True)}
