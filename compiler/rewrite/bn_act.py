"""Move the scale of a BatchNormalization that follows an activation back into the conv before it.

conv -> act -> BN with act(s z) = s act(z) for s > 0 (ReLU, leaky ReLU, PReLU; max pooling and dropout
between commute too):  s act(W x + b) + t = act((s W) x + s b) + t.
The scale goes into the conv and the BN is left as y = x + t (shift_forward then moves t on). A converter
cannot fold such a BN: it leaves a standalone MUL whose per-channel scales can span orders of magnitude,
and in int8 (one scale per tensor) the small channels are crushed.

Negative scales: s = sign * |s|; |s| moves into the conv and the BN keeps y = sign x + t (a MUL by +-1 has
no spread to crush). ReLU6 is left: s relu6(z) = min(relu(s z), 6 s) needs a cap per channel, which
neither Keras' ReLU (one max_value) nor TFLite's RELU6 can express.
"""

from __future__ import annotations

import numpy as np

from edgekiln.compiler.rewrite.bn import bn_affine, channels_last_bn, identity_bn, set_bn_affine
from edgekiln.compiler.rewrite.layer_state import LayerState
from edgekiln.compiler.rewrite.work import (
    WorkingModel,
    fused_activation,
    kernel_kind,
    positively_homogeneous,
    scale_outputs,
    scale_through,
)

SCALE_FREE_FUSED = ("linear", "relu", "leaky_relu")  # activations a conv may apply itself that commute with s > 0


def run(work: WorkingModel) -> list[str]:
    """Edits in place; one note per rewritten BatchNormalization (work.skipped gets the ones left, and why)."""
    notes = []
    for name, state in list(work.layers.items()):
        if not channels_last_bn(state):
            continue
        producer, why = scale_source(work, name)
        if producer is None:
            work.skipped.append(f"{name}: {why}")
            continue
        s, t = bn_affine(state)
        sign = np.where(s < 0, -1.0, 1.0)
        scale_outputs(work.layers[producer], s * sign)
        negative = int(np.sum(sign < 0))
        set_bn_affine(state, sign if negative else None, t if np.any(t) else None)
        state.identity = identity_bn(state)  # no sign, no shift: the converter drops it
        kept = f"; the sign of its {negative} negative scale(s) stays in it" if negative else ""
        notes.append(f"moved {name}'s scale into {producer}{kept}")
    return notes


def scale_source(work: WorkingModel, bn: str) -> tuple[str | None, str]:
    """The conv / dense whose outputs reach `bn` through layers that commute with a positive per-channel
    scale, each read only by the next; else None and why not."""
    current, path = bn, []  # type: tuple[str, list[str]]
    while True:
        source = work.sole_input(current)
        if source is None:
            return None, f"{current} reads the model input or several layers"
        if work.sole_consumer(source) != current:
            return None, f"{work.layers[source].kind} '{source}' before it also feeds other layers"
        state = work.layers[source]
        if kernel_kind(state) is not None:
            activation = fused_activation(state)
            if activation in SCALE_FREE_FUSED:
                return (source, "") if path or activation != "linear" else (None, "a conv right before: fold_bn")
            return None, f"{source} applies {activation}, which does not commute with a per-channel scale"
        if capped(state):
            return None, (f"{state.kind} '{source}' caps its output: s*relu6(z) = min(relu(s*z), 6s) needs a cap "
                          f"per channel, which one ReLU max_value (and TFLite's RELU6) cannot hold")
        if not (positively_homogeneous(state) or scale_through(state)) or state.kind == "BatchNormalization":
            return None, f"{state.kind} '{source}' before it does not commute with a per-channel scale"
        path.append(source)
        current = source


def capped(state: LayerState) -> bool:
    """ReLU6 (or any ReLU with a cap), as a layer or an Activation."""
    if state.kind == "ReLU":
        return state.config.get("max_value") is not None
    return state.kind == "Activation" and state.config.get("activation") == "relu6"
