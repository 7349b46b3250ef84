"""tf2onnx's decomposed LayerNorm and GELU rewritten into the forms onnxruntime's transformer fusions match
(in place).

tf2onnx writes Keras' LayerNormalization as moment arithmetic (TensorFlow's batch_normalization algebra):

    mean = GlobalAveragePool(x)                 (or ReduceMean over the last axis, keepdims)
    var  = GlobalAveragePool((x - mean) * (x - mean))
    m    = Reciprocal(Sqrt(var + eps)) * gamma
    y    = x * m + (Neg(mean) * m + beta)       = (x - mean) / sqrt(var + eps) * gamma + beta

which is one opset-17 `LayerNormalization(x, gamma, beta, axis, epsilon)`; GlobalAveragePool averages
every axis from 2 on, so its LayerNormalization axis is 2 (a [batch, tokens, width] tensor: the last axis).
Keras' exact GELU arrives (after graph/onnx_ops.standard_erfc) as

    0.5 x * (1 - Erf(-x * (1 / sqrt 2)))        =  (x * (1 + Erf(x / sqrt 2))) * 0.5

the right-hand form being what onnxruntime's Gelu fusion (fusion_gelu.py, its "pattern 2") matches.
No pattern, no change: a rewrite fires only where every intermediate result is used inside its pattern.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias, TypedDict, TypeVar

import numpy as np

if TYPE_CHECKING:
    import onnx

SQRT2 = math.sqrt(2.0)
T = TypeVar("T")


@dataclass
class _Graph:
    """Who makes and who reads each tensor, and the constants (the view one rewrite pass works on)."""

    model: onnx.ModelProto
    producer: dict[str, onnx.NodeProto]
    consumers: dict[str, list[onnx.NodeProto]]
    constants: dict[str, np.ndarray]
    outputs: set[str]
    shapes: dict[str, list[int]]

    @classmethod
    def of(cls, model: onnx.ModelProto) -> _Graph:
        import onnx
        from onnx import numpy_helper

        try:  # shapes only tell which axes GlobalAveragePool averages: without them, no LayerNorm match
            values = onnx.shape_inference.infer_shapes(model).graph
            shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
                      for v in [*values.value_info, *values.input]}
        except onnx.shape_inference.InferenceError:
            shapes = {}
        producer = {out: node for node in model.graph.node for out in node.output}
        consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in model.graph.node:
            for name in dict.fromkeys(node.input):  # a node reading a tensor twice (x * x) is one reader
                consumers.setdefault(name, []).append(node)
        constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        return cls(model, producer, consumers, constants, {o.name for o in model.graph.output}, shapes)

    def only_reader(self, name: str, op: str) -> onnx.NodeProto | None:
        """The single node reading `name`, when it is an `op` and `name` is no graph output."""
        readers = self.consumers.get(name, [])
        if len(readers) != 1 or readers[0].op_type != op or name in self.outputs:
            return None
        return readers[0]

    def other(self, node: onnx.NodeProto, name: str) -> str:
        """The input of a two-input node that is not `name` ('' when both are)."""
        rest = [i for i in node.input if i != name]
        return rest[0] if len(rest) == 1 else ""

    def constant(self, name: str) -> np.ndarray | None:
        return self.constants.get(name)


class Rewrites(TypedDict):
    """How many patterns each rewrite replaced, by the op it wrote (the fused ONNX candidate's facts)."""

    LayerNormalization: int
    Gelu: int


def canonicalize(model: onnx.ModelProto) -> Rewrites:
    """Every rewrite of this module, in place; how many patterns each replaced."""
    return {"LayerNormalization": fuse_layernorm(model), "Gelu": canonical_gelu(model)}


def fuse_layernorm(model: onnx.ModelProto) -> int:
    """tf2onnx's decomposed LayerNorm subgraphs -> one LayerNormalization node each (in place)."""
    return _rewrite(model, "GlobalAveragePool", _match_layernorm, "ReduceMean")


def canonical_gelu(model: onnx.ModelProto) -> int:
    """0.5 x (1 - Erf(-x / sqrt 2)) -> (x (1 + Erf(x / sqrt 2))) 0.5, onnxruntime's Gelu pattern (in place)."""
    return _rewrite(model, "Erf", _match_gelu)


# nodes replaced, new nodes, new initializers
Match: TypeAlias = "tuple[list[onnx.NodeProto], list[onnx.NodeProto], dict[str, np.ndarray]]"
Matcher: TypeAlias = "Callable[[_Graph, onnx.NodeProto], Match | None]"


def _rewrite(model: onnx.ModelProto, anchor: str, match: Matcher, *anchors: str) -> int:
    """Replace every match found from an `anchor` node: the new nodes take the place of the last node
    replaced (every input they read exists before it), the replaced ones go."""
    from onnx import numpy_helper

    graph = _Graph.of(model)
    found: list[Match] = []
    taken: set[str] = set()  # nodes by their first output (protobuf hands out new wrappers: no identity)
    for node in model.graph.node:
        if node.op_type in (anchor, *anchors):
            hit = match(graph, node)
            if hit and not {n.output[0] for n in hit[0]} & taken:
                found.append(hit)
                taken |= {n.output[0] for n in hit[0]}
    if not found:
        return 0
    last = {old[-1].output[0]: new for old, new, _ in found}
    nodes = []
    for node in model.graph.node:
        nodes.extend(last.get(node.output[0], []))
        if node.output[0] not in taken:
            nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    for _, _, tensors in found:
        model.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in tensors.items())
    _drop_unread(model, {i for old, _, _ in found for node in old for i in node.input})
    return len(found)


def _drop_unread(model: onnx.ModelProto, names: set[str]) -> None:
    """The constants among `names` that no node reads any more (gamma, beta, eps of the patterns)."""
    read = {i for node in model.graph.node for i in node.input} | {o.name for o in model.graph.output}
    kept = [t for t in model.graph.initializer if t.name not in names or t.name in read]
    if len(kept) < len(model.graph.initializer):
        del model.graph.initializer[:]
        model.graph.initializer.extend(kept)


def _mean_axis(graph: _Graph, node: onnx.NodeProto) -> int | None:
    """The first normalised axis of a mean node: 2 for GlobalAveragePool, -1 for ReduceMean(axes=[-1])."""
    if node.op_type == "GlobalAveragePool":
        return 2
    attrs = {a.name: a for a in node.attribute}
    given = graph.constant(node.input[1]) if len(node.input) > 1 else None  # opset 18: axes as an input
    axes = list(attrs["axes"].ints) if "axes" in attrs else given.tolist() if given is not None else None
    keep = attrs["keepdims"].i if "keepdims" in attrs else 1
    return -1 if axes == [-1] and keep == 1 else None


class _NoMatch(Exception):
    """Raised inside a matcher where the subgraph differs from its pattern."""


def _need(value: T | None) -> T:
    """The value, or no match (a missing node, constant or a failed condition)."""
    if value is None or value is False:
        raise _NoMatch
    return value


def _match_layernorm(graph: _Graph, mean: onnx.NodeProto) -> Match | None:
    """The moment arithmetic of the module docstring, from its first mean; None when anything differs."""
    try:
        return _layernorm(graph, mean)
    except _NoMatch:
        return None


def _layernorm(graph: _Graph, mean: onnx.NodeProto) -> Match:
    from onnx import helper

    axis, x, mu = _need(_mean_axis(graph, mean)), mean.input[0], mean.output[0]
    readers = graph.consumers.get(mu, [])
    _need(mu not in graph.outputs and sorted(n.op_type for n in readers) == ["Neg", "Sub"])
    neg, sub = sorted(readers, key=lambda n: n.op_type)
    _need(list(sub.input) == [x, mu] and graph.only_reader(neg.output[0], "Mul") is not None)
    square = _need(graph.only_reader(sub.output[0], "Mul"))
    _need(list(square.input) == [sub.output[0]] * 2)
    var = _need(graph.only_reader(square.output[0], mean.op_type))
    _need(_mean_axis(graph, var) == axis)
    add_eps, sqrt, recip, scale = _need(_follow(graph, var.output[0], ("Add", "Sqrt", "Reciprocal", "Mul")))
    eps = _need(graph.constant(graph.other(add_eps, var.output[0])))
    gamma = _need(graph.constant(graph.other(scale, recip.output[0])))
    m = scale.output[0]
    times = {graph.other(n, m): n for n in graph.consumers.get(m, []) if n.op_type == "Mul"}
    _need(len(graph.consumers.get(m, [])) == 2 and m not in graph.outputs and eps.size == 1)
    times_x, times_neg = _need(times.get(x)), _need(times.get(neg.output[0]))
    shift = _need(graph.only_reader(times_neg.output[0], "Add"))
    beta = _need(graph.constant(graph.other(shift, times_neg.output[0])))
    final = _need(graph.only_reader(shift.output[0], "Add"))
    _need(graph.other(final, shift.output[0]) == times_x.output[0])
    _need(graph.only_reader(times_x.output[0], "Add") is not None)
    width = gamma.size
    _need(beta.size == width and gamma.shape[-1:] == (width,) and beta.shape[-1:] == (width,))
    _need(axis != 2 or _last_axis_is(graph, x, width))
    out = final.output[0]
    tensors = {f"{out}/ln_scale": gamma.reshape(width).astype(np.float32),
               f"{out}/ln_bias": beta.reshape(width).astype(np.float32)}
    node = helper.make_node("LayerNormalization", [x, *tensors], [out], name=f"{out}/LayerNorm",
                            axis=axis, epsilon=float(eps.reshape(())))
    old = [mean, neg, sub, square, var, add_eps, sqrt, recip, scale, times_x, times_neg, shift, final]
    return old, [node], tensors


def _last_axis_is(graph: _Graph, name: str, width: int) -> bool:
    """`name` is a rank-3 tensor of last axis `width` (GlobalAveragePool then averages just that axis)."""
    dims = graph.shapes.get(name, [])
    return len(dims) == 3 and dims[2] == width


def _follow(graph: _Graph, name: str, ops: tuple[str, ...]) -> list[onnx.NodeProto] | None:
    """The chain of single readers of `name` with these op types, in order."""
    chain = []
    for op in ops:
        node = graph.only_reader(name, op)
        if node is None:
            return None
        chain.append(node)
        name = node.output[0]
    return chain


def _match_gelu(graph: _Graph, erf: onnx.NodeProto) -> Match | None:
    """Erf(Neg(x) * c) with c = 1/sqrt 2, read by Sub(1, .), read by Mul(0.5 x, .) (the docstring's form)."""
    try:
        return _gelu(graph, erf)
    except _NoMatch:
        return None


def _scalar(graph: _Graph, name: str) -> float | None:
    value = graph.constant(name)
    return float(value.reshape(())) if value is not None and value.size == 1 else None


def _gelu(graph: _Graph, erf: onnx.NodeProto) -> Match:
    from onnx import helper

    scaled = _need(graph.producer.get(erf.input[0]))
    _need(scaled.op_type == "Mul" and graph.only_reader(scaled.output[0], "Erf") is not None)
    neg = _need(next((graph.producer[i] for i in scaled.input
                      if i in graph.producer and graph.producer[i].op_type == "Neg"), None))
    c = _need(_scalar(graph, graph.other(scaled, neg.output[0])))
    _need(bool(np.isclose(c, 1 / SQRT2, rtol=1e-6)) and graph.only_reader(neg.output[0], "Mul") is not None)
    x = neg.input[0]
    minus = _need(graph.only_reader(erf.output[0], "Sub"))
    _need(minus.input[1] == erf.output[0] and _scalar(graph, minus.input[0]) == 1.0)
    final = _need(graph.only_reader(minus.output[0], "Mul"))
    half = _need(graph.producer.get(graph.other(final, minus.output[0])))
    _need(half.op_type == "Mul" and _scalar(graph, graph.other(half, x)) == 0.5)
    _need(graph.only_reader(half.output[0], "Mul") is not None)
    out = final.output[0]
    tensors = {f"{out}/sqrt2": np.array(SQRT2, np.float32), f"{out}/one": np.array(1.0, np.float32),
               f"{out}/half": np.array(0.5, np.float32)}
    names = [f"{out}/{s}" for s in ("div", "erf", "add", "mul")]
    new = [helper.make_node("Div", [x, f"{out}/sqrt2"], [names[0]], name=f"{out}/Div"),
           helper.make_node("Erf", [names[0]], [names[1]], name=f"{out}/Erf"),
           helper.make_node("Add", [names[1], f"{out}/one"], [names[2]], name=f"{out}/Add"),
           helper.make_node("Mul", [x, names[2]], [names[3]], name=f"{out}/Mul"),
           helper.make_node("Mul", [names[3], f"{out}/half"], [out], name=f"{out}/Half")]
    return [neg, scaled, erf, minus, half, final], new, tensors
