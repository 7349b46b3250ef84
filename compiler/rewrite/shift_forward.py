"""Move the shift a BatchNormalization is left with (y = x + t, or y = sign x + t) forward into the bias of
the next conv / depthwise conv / separable conv / dense.

   W (x + t) + b = W x + (b + W t)
through the layers between that pass a per-channel shift on (max pooling, which pads with -inf; global
pooling; dropout and other y = x layers) or only re-arrange it (Flatten, Reshape: the shift is then a
vector over the consumer's inputs). Exact only where the consumer never reads zero padding: with 'same'
padding and a kernel wider than 1, the border would see 0 where the shifted input had t, so the shift stays.
"""

from __future__ import annotations

import numpy as np

from edgekiln.compiler.rewrite.bn import channels_last_bn, set_bn_affine, sign_and_shift
from edgekiln.compiler.rewrite.layer_state import LayerState
from edgekiln.compiler.rewrite.work import (
    WorkingModel,
    bias,
    input_contribution,
    kernel_kind,
    out_view,
    set_kernel_and_bias,
    shift_through,
)

REARRANGE = ("Flatten", "Reshape")


def run(work: WorkingModel) -> list[str]:
    """Edits in place; one note per shift moved (work.skipped gets the ones that stay, and why)."""
    notes = []
    for name, state in list(work.layers.items()):
        parts = sign_and_shift(state) if channels_last_bn(state) else None
        if parts is None or not np.any(parts[1]):
            continue  # a BN with a real scale is bn_act's to leave; one without a shift has nothing to move
        sign, t = parts
        consumer, why = _move(work, name, t)
        if consumer is None:
            work.skipped.append(f"{name}: its shift stays: {why}")
            continue
        set_bn_affine(state, sign, None)
        if np.all(sign > 0):
            work.to_identity(name)
        notes.append(f"moved {name}'s shift into {consumer}'s bias")
    return notes


def _move(work: WorkingModel, start: str, t: np.ndarray) -> tuple[str | None, str]:
    """Add the shift t (per channel of `start`'s output) into the next consumer's bias; else None and why."""
    shift, name, shape = t.astype(np.float64), work.sole_consumer(start), work.layers[start].shape
    while name is not None and (shift_through(work.layers[name]) or work.layers[name].kind in REARRANGE):
        state = work.layers[name]
        if state.kind in REARRANGE:
            if None in shape or None in state.shape:
                return None, f"{name_of(state)} has an unknown shape"
            shift = _rearranged(shift, shape, state.shape)
        elif shift.ndim > 1:
            return None, f"{name_of(state)} pools a shift that is no longer one per channel"
        shape, name = state.shape, work.sole_consumer(name)
    if name is None:
        return None, "its output (after the layers that pass a shift on) feeds several layers or is an output"
    state = work.layers[name]
    if work.sole_input(name) is None or not (kernel_kind(state) or state.kind == "SeparableConv2D"):
        return None, f"the next layer, {name_of(state)}, has no bias to take it"
    if shift.ndim > 1:
        return None, f"{name_of(state)} reads a shift that differs from position to position (after a Reshape)"
    why = _padding_problem(state)
    if why:
        return None, why
    _absorb(state, shift)
    return name, ""


def _rearranged(shift: np.ndarray, before: tuple, after: tuple) -> np.ndarray:
    """The shift after a Flatten / Reshape: one per channel again when it is the same at every position,
    a vector over the consumer's inputs after a Flatten, else one value per position."""
    full = np.broadcast_to(shift, before).reshape(after)
    per_channel = full.reshape(-1, full.shape[-1])[0]
    return per_channel if full.ndim > 1 and np.all(full == per_channel) else full


def _padding_problem(state: LayerState) -> str:
    key = "depthwise_kernel" if state.kind == "SeparableConv2D" else "kernel"
    window = state.weights[key].shape[:-2]
    if state.kind != "Dense" and state.config.get("padding") == "same" and any(k > 1 for k in window):
        return (f"{name_of(state)} pads with zeros ('same' padding, {'x'.join(map(str, window))} kernel): "
                f"its border would see 0 where the shifted input had the shift")
    return ""


def name_of(state: LayerState) -> str:
    return f"{state.kind} '{state.name}'"


def _absorb(state: LayerState, t: np.ndarray) -> None:
    """Edits in place: the layer's bias takes W t (t per input channel)."""
    if state.kind != "SeparableConv2D":
        kernel = state.weights["kernel"]
        set_kernel_and_bias(state, out_view(state), bias(state) + input_contribution(state, kernel, t))
        return
    depthwise, pointwise = state.weights["depthwise_kernel"], state.weights["pointwise_kernel"]
    inner = (depthwise * t.reshape(-1, 1)).sum(axis=tuple(range(depthwise.ndim - 2))).reshape(-1)  # (c, m) c-major
    old = state.weights.get("bias", np.zeros(pointwise.shape[-1], np.float32))
    state.weights["bias"] = (old + pointwise.reshape(-1, pointwise.shape[-1]).T @ inner).astype(np.float32)
    state.config["use_bias"] = True
