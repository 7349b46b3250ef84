"""Cross-layer equalisation of consecutive conv / dense pairs (Nagel et al. 2019, "Data-Free Quantization").

conv1 -> f -> conv2 with f(s x) = s f(x) for s > 0 (ReLU, PReLU, pooling, a BN's shift, ...):
    W2 f(W1 x + b1) = (W2 S) f(S^-1 W1 x + S^-1 b1)   for any positive diagonal S.
With s_i = sqrt(r1_i r2_i) / r2_i, where r1_i = max |W1| of output channel i and r2_i = max |W2| of input
channel i, both ranges become sqrt(r1_i r2_i): channel i no longer spans orders of magnitude more or less than
its neighbours, so one int8 scale per tensor (activations) and per output channel (weights) fits all channels.
A BatchNormalization between the two keeps its scale; its shift is divided by S with the channel.
"""

from __future__ import annotations

import numpy as np

from edgekiln.compiler.rewrite.bn import channels_last_bn
from edgekiln.compiler.rewrite.layer_state import LayerState
from edgekiln.compiler.rewrite.work import (
    WorkingModel,
    fused_activation,
    input_ranges,
    kernel_kind,
    output_ranges,
    scale_inputs,
    scale_outputs,
    scale_through,
)

MIN_SPREAD = 10.0  # equalise a pair only when conv1's channel ranges differ by at least an order of magnitude
# A channel whose r1 * r2 is below this share of the pair's largest carries nothing conv2 can see (a dead
# channel: weight decay leaves such weights near 1e-33, and their float32 product underflows to 0, which
# made s = 0 and 1/s = inf); it keeps s = 1.
DEAD_SHARE = 1e-12
SWEEPS = 4         # pairs in a chain share layers; a few sweeps let them settle (Nagel iterate to convergence)


def run(work: WorkingModel) -> list[str]:
    """Edits in place; returns one note per equalised pair with the spread before and after."""
    pairs = [p for p in _pairs(work) if _spread(output_ranges(work.layers[p[0]])) >= MIN_SPREAD]
    before = {p[0]: _spread(output_ranges(work.layers[p[0]])) for p in pairs}
    for _ in range(SWEEPS):
        for first, middle, second in pairs:
            _equalise(work, first, middle, second)
    return [f"equalised {first} -> {second}: channel range spread {before[first]:.0f}x -> "
            f"{_spread(output_ranges(work.layers[first])):.1f}x" for first, _, second in pairs]


def _pairs(work: WorkingModel) -> list[tuple[str, list[str], str]]:
    """(conv1, layers between, conv2) where every layer in between passes a positive channel scale through."""
    pairs = []
    for name, state in work.layers.items():
        if kernel_kind(state) is None or fused_activation(state) not in ("linear", "relu", "leaky_relu"):
            continue
        middle, current = [], work.sole_consumer(name)
        while current is not None and (scale_through(work.layers[current]) or
                                       channels_last_bn(work.layers[current])):
            middle.append(current)
            current = work.sole_consumer(current)
        if current is not None and kernel_kind(work.layers[current]) is not None and \
                work.sole_input(current) == (middle[-1] if middle else name):
            pairs.append((name, middle, current))
    return pairs


def _equalise(work: WorkingModel, first: str, middle: list[str], second: str) -> None:
    s = channel_scales(output_ranges(work.layers[first]), input_ranges(work.layers[second]))
    scale_outputs(work.layers[first], 1.0 / s)
    for name in middle:
        if work.layers[name].kind == "BatchNormalization":  # ReLU, PReLU slopes, pooling: scale-free
            _divide_shift(work.layers[name], s)
    scale_inputs(work.layers[second], s)


def channel_scales(r1: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """s_i = sqrt(r1_i r2_i) / r2_i = sqrt(r1_i / r2_i) in float64; 1 for a dead channel, so every s is
    finite and positive and neither layer's weights can overflow float32."""
    r1, r2 = r1.astype(np.float64), r2.astype(np.float64)
    product = r1 * r2
    finite = np.isfinite(product)
    live = finite & (product > DEAD_SHARE * product[finite].max(initial=0.0))
    s = np.ones_like(r1)
    s[live] = np.sqrt(r1[live] / r2[live])
    s[~np.isfinite(s) | (s <= 0)] = 1.0
    return s.astype(np.float32)


def _divide_shift(state: LayerState, s: np.ndarray) -> None:
    """BN'(x / s) = BN(x) / s: divide beta and the moving mean by s (the scale is unchanged)."""
    for key in ("beta", "moving_mean"):
        if key in state.weights:
            state.weights[key] = (state.weights[key] / s).astype(np.float32)


def _spread(ranges: np.ndarray) -> float:
    """Largest over smallest range of the live channels (a dead channel's range says nothing of spread)."""
    ranges = ranges[np.isfinite(ranges)].astype(np.float64)
    live = ranges[ranges > np.sqrt(DEAD_SHARE) * ranges.max(initial=0.0)]
    return float(live.max() / live.min()) if live.size else 1.0
