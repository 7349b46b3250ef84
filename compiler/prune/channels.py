"""The channel graph: what structured pruning needs to know about a model, and nothing else.

An adapter lists the model's operations in topological order as `Node`s. Each node has one output
tensor, named like the node; `op` is the adapter's key for the operation (a Keras layer class or an
ONNX op type, refined where attributes matter, e.g. "Conv(depthwise)"), looked up in the coupling
table of `groups.py`. Weights appear only as far as importance scores and cost counts need them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHANNELS_LAST = "channels_last"    # Keras: NHWC, Flatten puts the channel fastest
CHANNELS_FIRST = "channels_first"  # ONNX: NCHW, Flatten puts the channel slowest


@dataclass(frozen=True, eq=False)
class Node:
    """One operation as pruning sees it.

    channels: length of the output's channel axis.
    spatial: output positions per sample (H*W of a feature map, 1 for a vector); for a Flatten node,
        the positions of its INPUT that are folded into the one output axis.
    kernel: producers: weights per (input, output) channel pair (kh*kw; 1 for dense);
        pass-through nodes: multiply-accumulates per channel and position (kh*kw for depthwise, else 0).
    bias: producers: one bias per output channel.
    per_channel_params: pass-through nodes: parameters per channel (BatchNormalization 4; depthwise
        3x3 with bias 10), so parameter counts before and after are exact.
    weight: producers: filters as (out_channels, fan_in), for the L1/L2 criteria.
    scale: BatchNormalization gamma, for the bn criterion.
    """

    name: str
    op: str
    inputs: tuple[str, ...] = ()
    channels: int = 0
    spatial: int = 1
    kernel: int = 1
    bias: bool = False
    per_channel_params: int = 0
    weight: np.ndarray | None = None
    scale: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class ChannelGraph:
    """A model's operations in topological order, its output tensors, and its channel layout.

    fixed: (tensor, reason) pairs for tensors whose channels must not change for a reason only the
    adapter knows (e.g. a softmax fused into a dense layer normalises across its channels).
    """

    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]
    layout: str = CHANNELS_LAST
    fixed: tuple[tuple[str, str], ...] = ()

    def node(self, name: str) -> Node:
        index = self.__dict__.get("_index")
        if index is None:
            index = {n.name: n for n in self.nodes}
            object.__setattr__(self, "_index", index)  # a derived index, not state: the graph stays frozen
        return index[name]


# Which channels of each group to keep: group id -> boolean mask over the group's channels.
# A group missing from a plan keeps all of its channels.
Plan = dict[int, np.ndarray]
# Per prunable group (by id): one importance score per channel, higher = keep (prune/importance.py).
Scores = dict[int, np.ndarray]
# Per prunable group (by id): the share of its channels to remove; a group missing removes none.
Ratios = dict[int, float]
