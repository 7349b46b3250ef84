"""Fold a BatchNormalization into the conv / dense / depthwise conv right before it.

conv -> BN:  BN(W x + b) = s (W x + b) + t = (s W) x + (s b + t), with s = gamma / sqrt(var + eps) and
t = beta - mean * s per output channel. Exact in real arithmetic; the BN becomes a no-op.
Only when the conv has no activation of its own and the BN is its output's only reader.
"""

from __future__ import annotations

from edgekiln.compiler.rewrite.bn import bn_affine, channels_last_bn
from edgekiln.compiler.rewrite.work import (
    WorkingModel,
    fused_activation,
    kernel_kind,
    scale_outputs,
)


def run(work: WorkingModel) -> list[str]:
    """Edits in place; returns one note per folded BatchNormalization."""
    notes = []
    for name, state in list(work.layers.items()):
        source = work.sole_input(name)
        if not channels_last_bn(state) or source is None or work.sole_consumer(source) != name:
            continue
        producer = work.layers[source]
        if kernel_kind(producer) is None or fused_activation(producer) != "linear":
            continue
        s, t = bn_affine(state)
        scale_outputs(producer, s, t)
        work.to_identity(name)
        notes.append(f"folded {name} into {source}")
    return notes
