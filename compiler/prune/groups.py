"""Coupling rules (as data, per op type) and the groups of channels that must be removed together.

Two ideas from DepGraph / Torch-Pruning: a producer's output channels couple to its consumers'
input channels, and an op whose output channel i is its input channel i (BatchNormalization, ReLU,
pooling, depthwise conv) passes the coupling through. Add ties its inputs' channels together;
Concat lays its inputs' channels end to end; Flatten spreads each channel over positions.

Every tensor gets a channel map: for each position on its channel axis, the channel space it comes
from and the index in that space. Ties unite spaces (union-find); a group is a united space. An op
missing from `COUPLING` blocks every space it touches: we never guess how an unknown op mixes
channels. Model inputs and model outputs are blocked too (their channel counts are the interface).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from edgekiln.compiler.prune.channels import CHANNELS_LAST, ChannelGraph, Node, Plan


class Role(StrEnum):
    """How an op relates its output channels to its input channels."""

    SOURCE = "source"      # a model input: channels fixed by the caller
    PRODUCER = "producer"  # new channels (filters); reads every channel of its one input
    PASS = "pass"          # output channel i is input channel i (per-channel or elementwise)
    TIE = "tie"            # elementwise over several inputs: they must lose the same channels
    CONCAT = "concat"      # inputs' channels end to end along the channel axis
    FLATTEN = "flatten"    # (positions, channels) folded into one axis


# Keras layer classes and ONNX op types share one namespace; adapters refine a key when attributes
# change the coupling ("Conv(depthwise)" vs "Conv(groups=4)", which is absent and therefore blocks).
COUPLING: dict[str, Role] = {
    "Input": Role.SOURCE,
    # producers
    "Conv2D": Role.PRODUCER, "Dense": Role.PRODUCER,                       # Keras
    "Conv": Role.PRODUCER, "Gemm": Role.PRODUCER, "MatMul": Role.PRODUCER,  # ONNX (constant weights)
    # pass-through: per-channel parameters or elementwise
    "BatchNormalization": Role.PASS, "DepthwiseConv2D": Role.PASS, "Conv(depthwise)": Role.PASS,
    "ReLU": Role.PASS, "LeakyReLU": Role.PASS, "ELU": Role.PASS, "Activation": Role.PASS,
    "Relu": Role.PASS, "Clip": Role.PASS, "Sigmoid": Role.PASS, "Tanh": Role.PASS, "LeakyRelu": Role.PASS,
    "HardSwish": Role.PASS, "HardSigmoid": Role.PASS, "Elu": Role.PASS, "Selu": Role.PASS,
    "MaxPooling2D": Role.PASS, "AveragePooling2D": Role.PASS, "MaxPool": Role.PASS, "AveragePool": Role.PASS,
    "GlobalAveragePooling2D": Role.PASS, "GlobalMaxPooling2D": Role.PASS,
    "GlobalAveragePool": Role.PASS, "GlobalMaxPool": Role.PASS,
    "ZeroPadding2D": Role.PASS, "Pad": Role.PASS, "Cropping2D": Role.PASS, "UpSampling2D": Role.PASS,
    "Squeeze": Role.PASS, "Unsqueeze": Role.PASS, "ReduceMean(spatial)": Role.PASS,  # ONNX, off the channel axis
    "Dropout": Role.PASS, "SpatialDropout2D": Role.PASS, "GaussianNoise": Role.PASS, "Identity": Role.PASS,
    "Add(constant)": Role.PASS, "Mul(constant)": Role.PASS, "Sub(constant)": Role.PASS, "Div(constant)": Role.PASS,
    # ties: elementwise over equally shaped inputs
    "Add": Role.TIE, "Subtract": Role.TIE, "Multiply": Role.TIE, "Average": Role.TIE, "Maximum": Role.TIE,
    "Minimum": Role.TIE, "Sub": Role.TIE, "Mul": Role.TIE, "Div": Role.TIE, "Max": Role.TIE, "Min": Role.TIE,
    "Sum": Role.TIE,
    # layout
    "Concatenate": Role.CONCAT, "Concat": Role.CONCAT,
    "Flatten": Role.FLATTEN,
}


@dataclass(frozen=True, eq=False)
class ChannelMap:
    """Per position on a tensor's channel axis: its group id and its channel index in that group."""

    group: np.ndarray
    index: np.ndarray


@dataclass(frozen=True)
class Group:
    """Channels that go together. `blocked` lists why it cannot be pruned (empty: prunable)."""

    id: int
    channels: int
    producers: tuple[str, ...]
    blocked: tuple[str, ...]

    @property
    def prunable(self) -> bool:
        return not self.blocked and bool(self.producers) and self.channels > 1

    @property
    def label(self) -> str:
        return "+".join(self.producers) or f"group{self.id}"


@dataclass(frozen=True, eq=False)
class Analysis:
    """The groups of a channel graph and every tensor's channel map."""

    graph: ChannelGraph
    groups: tuple[Group, ...]
    maps: dict[str, ChannelMap]

    @property
    def prunable(self) -> list[Group]:
        return [g for g in self.groups if g.prunable]

    @property
    def blocked(self) -> list[Group]:
        return [g for g in self.groups if g.blocked and g.producers]

    def mask(self, tensor: str, plan: Plan) -> np.ndarray:
        """Which positions of `tensor`'s channel axis survive `plan` (boolean)."""
        cmap = self.maps[tensor]
        keep = np.ones(len(cmap.group), dtype=bool)
        for gid in np.unique(cmap.group):
            if int(gid) in plan:
                sel = cmap.group == gid
                keep[sel] = plan[int(gid)][cmap.index[sel]]
        return keep

    def group_of(self, producer: str) -> Group:
        return next(g for g in self.groups if producer in g.producers)


class _Spaces:
    """Union-find over channel spaces, carrying each space's size and reasons to block it."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.size: list[int] = []
        self.reasons: list[list[str]] = []

    def new(self, size: int, reason: str | None = None) -> ChannelMap:
        sid = len(self.parent)
        self.parent.append(sid)
        self.size.append(size)
        self.reasons.append([reason] if reason else [])
        return ChannelMap(np.full(size, sid), np.arange(size))

    def root(self, sid: int) -> int:
        while self.parent[sid] != sid:
            self.parent[sid] = self.parent[self.parent[sid]]
            sid = self.parent[sid]
        return sid

    def union(self, a: int, b: int) -> None:
        ra, rb = self.root(a), self.root(b)
        if ra != rb:
            self.parent[rb] = ra
            self.reasons[ra] += self.reasons[rb]

    def block(self, cmap: ChannelMap, reason: str) -> None:
        for sid in {self.root(int(s)) for s in np.unique(cmap.group)}:
            if reason not in self.reasons[sid]:
                self.reasons[sid].append(reason)

    def is_whole(self, cmap: ChannelMap) -> bool:
        """The map is exactly one space in its own order (what a tie can unite channel by channel)."""
        roots = {self.root(int(s)) for s in np.unique(cmap.group)}
        return (len(roots) == 1 and self.size[roots.pop()] == len(cmap.index)
                and bool(np.array_equal(cmap.index, np.arange(len(cmap.index)))))


Rule = Callable[[Node, list[ChannelMap], _Spaces, str], ChannelMap]


def _source(node: Node, ins: list[ChannelMap], spaces: _Spaces, layout: str) -> ChannelMap:
    return spaces.new(node.channels, f"model input {node.name}")


def _producer(node: Node, ins: list[ChannelMap], spaces: _Spaces, layout: str) -> ChannelMap:
    if len(ins) != 1:
        return _unknown(node, ins, spaces, layout, f"{node.op} {node.name} reads {len(ins)} tensors")
    return spaces.new(node.channels)


def _pass(node: Node, ins: list[ChannelMap], spaces: _Spaces, layout: str) -> ChannelMap:
    if len(ins) != 1 or len(ins[0].group) != node.channels:
        return _unknown(node, ins, spaces, layout, f"{node.op} {node.name} changes the channel count")
    return ins[0]


def _tie(node: Node, ins: list[ChannelMap], spaces: _Spaces, layout: str) -> ChannelMap:
    if any(len(m.group) != node.channels for m in ins) or not ins:
        return _unknown(node, ins, spaces, layout, f"{node.op} {node.name} broadcasts over channels")
    if not all(spaces.is_whole(m) for m in ins):
        return _unknown(node, ins, spaces, layout, f"{node.op} {node.name} ties concatenated/flattened channels")
    for other in ins[1:]:
        spaces.union(int(ins[0].group[0]), int(other.group[0]))
    return ins[0]


def _concat(node: Node, ins: list[ChannelMap], spaces: _Spaces, layout: str) -> ChannelMap:
    return ChannelMap(np.concatenate([m.group for m in ins]), np.concatenate([m.index for m in ins]))


def _flatten(node: Node, ins: list[ChannelMap], spaces: _Spaces, layout: str) -> ChannelMap:
    (cmap,) = ins
    if layout == CHANNELS_LAST:  # index = position * C + channel: the channel pattern repeats per position
        return ChannelMap(np.tile(cmap.group, node.spatial), np.tile(cmap.index, node.spatial))
    return ChannelMap(np.repeat(cmap.group, node.spatial), np.repeat(cmap.index, node.spatial))


def _unknown(node: Node, ins: list[ChannelMap], spaces: _Spaces, layout: str, reason: str = "") -> ChannelMap:
    reason = reason or f"{node.op} {node.name} has no coupling rule"
    for cmap in ins:
        spaces.block(cmap, reason)
    return spaces.new(node.channels, reason)


RULES: dict[Role, Rule] = {Role.SOURCE: _source, Role.PRODUCER: _producer, Role.PASS: _pass, Role.TIE: _tie,
                           Role.CONCAT: _concat, Role.FLATTEN: _flatten}


def analyze(graph: ChannelGraph) -> Analysis:
    """Group the channels of `graph`; blocked groups say why."""
    spaces = _Spaces()
    maps: dict[str, ChannelMap] = {}
    for node in graph.nodes:
        missing = [i for i in node.inputs if i not in maps]
        if missing:
            raise ValueError(f"channel graph is not in topological order: {node.name} reads {missing}")
        rule = RULES.get(COUPLING.get(node.op), _unknown)  # type: ignore[arg-type]
        maps[node.name] = rule(node, [maps[i] for i in node.inputs], spaces, graph.layout)
    for out in graph.outputs:
        spaces.block(maps[out], f"model output {out}")
    for tensor, reason in graph.fixed:
        spaces.block(maps[tensor], reason)
    return _resolve(graph, spaces, maps)


def _resolve(graph: ChannelGraph, spaces: _Spaces, maps: dict[str, ChannelMap]) -> Analysis:
    """Number the united spaces 0..G-1 and collect each group's producers."""
    roots = sorted({spaces.root(s) for s in range(len(spaces.parent))})
    number = {r: k for k, r in enumerate(roots)}
    producers: dict[int, list[str]] = {k: [] for k in number.values()}
    for node in graph.nodes:
        if COUPLING.get(node.op) is Role.PRODUCER and len(node.inputs) == 1:
            producers[number[spaces.root(int(maps[node.name].group[0]))]].append(node.name)
    lookup = np.array([number[spaces.root(s)] for s in range(len(spaces.parent))])
    resolved = {name: ChannelMap(lookup[m.group], m.index) for name, m in maps.items()}
    groups = tuple(Group(number[r], spaces.size[r], tuple(producers[number[r]]), tuple(spaces.reasons[r]))
                   for r in roots)
    return Analysis(graph, groups, resolved)
