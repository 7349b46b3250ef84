"""Fold a BatchNormalization that follows an activation: its scale backwards through the activation,
its shift forwards into the next layer's bias.

conv -> act -> BN with act(s z) = s act(z) for s > 0 (ReLU, leaky ReLU, PReLU):
    s act(W x + b) + t = act((s W) x + s b) + t.
The scale goes into the conv. The shift t then goes forward, through pooling, into the bias of the next
conv / dense when that is exact (no zero padding under a wider-than-1 kernel); otherwise the BN stays as
a pure shift (one ADD). A converter cannot fold such a BN, and leaves a standalone MUL whose per-channel
scales can span orders of magnitude: in int8 (one scale per tensor) the small channels are crushed.
"""

from __future__ import annotations

import numpy as np

from edgekiln.compiler.rewrite.work import (
    WorkingModel,
    bn_affine,
    channels_last_bn,
    fused_activation,
    input_shift_in_bias,
    kernel_kind,
    positively_homogeneous,
    scale_outputs,
    set_bn_shift,
    shift_through,
)


def run(work: WorkingModel) -> list[str]:
    """Edits in place; returns one note per rewritten BatchNormalization (or why one was left)."""
    notes = []
    for name, state in list(work.layers.items()):
        producer = _linear_before_activation(work, name) if channels_last_bn(state) else None
        if producer is None:
            continue
        s, t = bn_affine(state)
        if np.any(s <= 0):  # a negative scale does not pass through ReLU; equalize can still balance around it
            continue
        scale_outputs(work.layers[producer], s)
        if np.all(t == 0) or _shift_forward(work, name, t):
            work.to_identity(name)
            notes.append(f"moved {name}'s scale into {producer} and its shift into the next layer's bias")
        else:
            set_bn_shift(state, t.astype(np.float32))
            notes.append(f"moved {name}'s scale into {producer}; its shift stays (next layer pads with zeros)")
    return notes


def _linear_before_activation(work: WorkingModel, bn: str) -> str | None:
    """The conv/dense in `conv -> act -> bn` (or `conv(activation=relu) -> bn`), each read only by the next."""
    act = work.sole_input(bn)
    if act is None or work.sole_consumer(act) != bn:
        return None
    state = work.layers[act]
    if kernel_kind(state) is not None:  # the activation is fused into the conv
        return act if fused_activation(state) in ("relu", "leaky_relu") else None
    linear = work.sole_input(act)
    if not positively_homogeneous(state) or state.kind in ("Identity", "Dropout") or linear is None:
        return None
    producer = work.layers[linear]
    if kernel_kind(producer) is None or work.sole_consumer(linear) != act:
        return None
    return linear if fused_activation(producer) in ("linear", "relu") else None


def _shift_forward(work: WorkingModel, start: str, t: np.ndarray) -> bool:
    """Add t into the bias of the next conv/dense after `start`, through pooling; False if not exact."""
    name = work.sole_consumer(start)
    while name is not None and shift_through(work.layers[name]):
        name = work.sole_consumer(name)
    if name is None or work.sole_input(name) is None or kernel_kind(work.layers[name]) is None:
        return False
    return input_shift_in_bias(work.layers[name], t)
