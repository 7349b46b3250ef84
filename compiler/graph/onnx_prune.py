"""ONNX side of structured pruning: pure functions over an `onnx.ModelProto` (NCHW, channel axis 1).

`channel_graph` describes the model for compiler/prune; `apply` returns a new model with the plan's
channels removed (initializers sliced, a depthwise conv's `group` and a flattening Reshape's shape
fixed, stale intermediate shapes dropped); `masked` returns a copy whose consumers ignore the
removed channels (same outputs as `apply`, for sensitivity scans). Constant operands (initializers
or Constant nodes) are not graph nodes: a per-channel constant of an Add/Mul is sliced with its op.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekiln.compiler.prune.channels import CHANNELS_FIRST, ChannelGraph, Node, Plan
from edgekiln.compiler.prune.groups import Analysis

if TYPE_CHECKING:
    import onnx

_ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Sum"}
_SAME = {"Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "HardSwish", "HardSigmoid", "Elu", "Selu", "MaxPool",
         "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Dropout", "Identity", "BatchNormalization"}


@dataclass(frozen=True)
class ModelFacts:
    """What the rules read from a model: constants by name, tensor shapes, and graph I/O."""

    consts: dict[str, np.ndarray]
    shapes: dict[str, tuple[int | None, ...]]  # None: an axis without a static size
    inputs: list[str]
    outputs: list[str]

    def rank(self, name: str) -> int:
        return len(self.shapes.get(name, ()))

    def channels(self, name: str) -> int:
        shape = self.shapes.get(name, ())
        return int(shape[1]) if len(shape) >= 2 and isinstance(shape[1], int) else 0

    def features(self, name: str) -> int | None:
        """Elements per sample (every axis after the batch), when all those axes are static."""
        dims = self.shapes.get(name, ())[1:]
        static = [d for d in dims if d is not None]
        return math.prod(static) if len(static) == len(dims) else None

    def positions(self, name: str) -> int:
        return int(np.prod([d for d in self.shapes.get(name, ())[2:] if isinstance(d, int)]))


def read_model(model: onnx.ModelProto) -> ModelFacts:
    import onnx
    from onnx import numpy_helper

    graph = onnx.shape_inference.infer_shapes(model).graph
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    shapes = {vi.name: tuple(d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim)
              for vi in [*graph.input, *graph.value_info, *graph.output]}
    return ModelFacts(consts, shapes, [i.name for i in graph.input if i.name not in consts],
                  [o.name for o in graph.output])


def attr(node: onnx.NodeProto, name: str, default: object = None) -> Any:
    """The value of the node's attribute `name` (int, float, bytes, list, tensor...), else `default`."""
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def channel_graph(model: onnx.ModelProto) -> ChannelGraph:
    """The channel graph of an ONNX model (nodes named after their output tensors)."""
    info = read_model(model)
    nodes = [Node(name, "Input", (), info.channels(name), kernel=0) for name in info.inputs]
    for node in model.graph.node:
        if node.op_type == "Constant":
            continue
        data = tuple(i for i in node.input if i and i not in info.consts)
        if len(node.output) != 1:
            nodes += [Node(out, f"{node.op_type}(multi-output)", data, info.channels(out), kernel=0)
                      for out in node.output if out]
            continue
        nodes.append(_describe(node, data, info))
    return ChannelGraph(tuple(nodes), tuple(info.outputs), layout=CHANNELS_FIRST)


def _describe(node: onnx.NodeProto, data: tuple[str, ...], info: ModelFacts) -> Node:
    out = node.output[0]
    base = {"name": out, "op": _op_key(node, data, info), "inputs": data, "channels": info.channels(out),
            "spatial": max(1, info.positions(out)), "kernel": 0}
    op, ins = base["op"], list(node.input)
    if op == "Conv":
        w = info.consts[ins[1]]
        return Node(**{**base, "channels": w.shape[0], "kernel": int(np.prod(w.shape[2:])),
                       "bias": len(ins) > 2 and bool(ins[2]), "weight": w.reshape(w.shape[0], -1)})
    if op == "Conv(depthwise)":
        taps, bias = int(np.prod(info.consts[ins[1]].shape[2:])), len(ins) > 2 and bool(ins[2])
        return Node(**{**base, "kernel": taps, "per_channel_params": taps + bias})
    if op in ("Gemm", "MatMul"):
        w = _dense_weight(node, info)  # (out, in)
        bias = op == "Gemm" and len(ins) > 2 and bool(ins[2]) and info.consts[ins[2]].size == w.shape[0]
        return Node(**{**base, "channels": w.shape[0], "spatial": 1, "kernel": 1, "bias": bias, "weight": w})
    if op == "BatchNormalization":
        return Node(**{**base, "per_channel_params": 4, "scale": info.consts[ins[1]]})
    if op == "Flatten":
        return Node(**{**base, "spatial": max(1, info.positions(data[0]))})
    if op.endswith("(constant)") and _const_axis(node, info) is not None:
        return Node(**{**base, "per_channel_params": 1})
    return Node(**base)


def _dense_weight(node: onnx.NodeProto, info: ModelFacts) -> np.ndarray:
    w = info.consts[node.input[1]]
    return w if node.op_type == "Gemm" and attr(node, "transB", 0) else w.T


def _op_key(node: onnx.NodeProto, data: tuple[str, ...], info: ModelFacts) -> str:
    """The op type, refined where attributes or constant operands change the coupling."""
    op, ins = node.op_type, list(node.input)
    rank = info.rank(ins[0]) if ins else 0
    if op == "Conv":
        if len(ins) < 2 or ins[1] not in info.consts:
            return "Conv(dynamic weight)"
        groups, w = attr(node, "group", 1), info.consts[ins[1]]
        if groups == 1:
            return "Conv"
        depthwise = groups == w.shape[0] == info.channels(ins[0]) and w.shape[1] == 1
        return "Conv(depthwise)" if depthwise else f"Conv(group={groups})"
    if op in ("Gemm", "MatMul"):
        plain = len(data) == 1 and ins[0] == data[0] and ins[1] in info.consts and rank == 2
        return op if plain and not attr(node, "transA", 0) and info.consts[ins[1]].ndim == 2 else f"{op}(dynamic)"
    if op in _ELEMENTWISE and len(data) == 1 and len(ins) == 2:
        return f"{op}(constant)" if _const_axis(node, info) != -1 else f"{op}(constant over channels)"
    if op in ("Concat", "Flatten") and attr(node, "axis", 1) % max(rank, 1) != 1:
        return f"{op}(axis={attr(node, 'axis')})"
    if op == "Reshape":
        return "Flatten" if _flattens(node, info) else "Reshape"
    if op in ("Squeeze", "Unsqueeze", "ReduceMean"):
        axes = _axes(node, info)
        ok = axes is not None and all(a % max(rank, info.rank(node.output[0]), 1) > 1 for a in axes)
        return (op if op != "ReduceMean" else "ReduceMean(spatial)") if ok else f"{op}(axes={axes})"
    if op == "Pad":
        pads = info.consts.get(ins[1]) if len(ins) > 1 else attr(node, "pads")
        off_channels = pads is not None and not any(np.asarray(pads).reshape(2, -1)[:, :2].ravel())
        return "Pad" if off_channels else "Pad(channels)"
    return op


def _axes(node: onnx.NodeProto, info: ModelFacts) -> list[int] | None:
    axes = attr(node, "axes")
    if axes is None and len(node.input) > 1 and node.input[1] in info.consts:
        axes = info.consts[node.input[1]].tolist()
    return None if axes is None else list(axes)


def _flattens(node: onnx.NodeProto, info: ModelFacts) -> bool:
    """A Reshape (N, C, H, W) -> (N, C*H*W), as PyTorch exports x.view(n, -1)."""
    src, out = info.shapes.get(node.input[0], ()), info.shapes.get(node.output[0], ())
    features = info.features(node.input[0])
    return len(src) >= 3 and len(out) == 2 and features is not None and out[1] == features


def _const_axis(node: onnx.NodeProto, info: ModelFacts) -> int | None:
    """For an elementwise op with one constant: the constant's axis that runs along channels.

    None: the constant does not vary over channels (scalar, or broadcast along them);
    -1: it varies along channels in a way that cannot be sliced per channel.
    """
    const = next(info.consts[i] for i in node.input if i in info.consts)
    rank = info.rank(node.output[0])
    axis = 1 - (rank - const.ndim)  # numpy broadcasting aligns shapes from the right
    if axis < 0 or const.shape[axis] == 1:
        return None
    return axis if const.shape[axis] == info.channels(node.output[0]) else -1


def apply(model: onnx.ModelProto, analysis: Analysis, plan: Plan) -> onnx.ModelProto:
    """A new model with the plan's channels removed; the input model is not touched."""
    return _rewrite(model, analysis, plan, zero_only=False)


def masked(model: onnx.ModelProto, analysis: Analysis, plan: Plan) -> onnx.ModelProto:
    """A copy whose conv/dense consumers ignore the removed channels (outputs equal `apply`'s)."""
    return _rewrite(model, analysis, plan, zero_only=True)


def _rewrite(model: onnx.ModelProto, analysis: Analysis, plan: Plan, zero_only: bool) -> onnx.ModelProto:
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    info = read_model(model)
    writer = ConstWriter(out.graph, info)
    for node in out.graph.node:
        key = analysis.graph.node(node.output[0]).op if node.output and node.output[0] in analysis.maps else ""
        out_mask = analysis.mask(node.output[0], plan) if key else None
        in_mask = analysis.mask(node.input[0], plan) if key and node.input[0] in analysis.maps else None
        if zero_only:
            _zero_inputs(node, key, in_mask, writer)
        elif out_mask is not None and (not out_mask.all() or (in_mask is not None and not in_mask.all())):
            _slice(node, key, in_mask, out_mask, writer)
    if not zero_only:
        del out.graph.value_info[:]  # intermediate shapes changed; runtimes re-infer them
    return out


class ConstWriter:
    """Replaces constant operands; a constant shared with another node gets a copy of its own."""

    def __init__(self, graph: onnx.GraphProto, info: ModelFacts) -> None:
        self.graph, self.info = graph, info
        self.uses = Counter(i for n in graph.node for i in n.input)
        self.inits = {t.name: t for t in graph.initializer}

    def set(self, node: onnx.NodeProto, index: int, array: np.ndarray) -> None:
        from onnx import numpy_helper

        name = node.input[index]
        if name in self.inits and self.uses[name] == 1:
            self.inits[name].CopyFrom(numpy_helper.from_array(array, name))
            return
        fresh = f"{name}__pruned_{node.output[0]}"
        self.graph.initializer.append(numpy_helper.from_array(array, fresh))
        node.input[index] = fresh

    def get(self, node: onnx.NodeProto, index: int) -> np.ndarray:
        return self.info.consts[node.input[index]]


def _zero_inputs(node: onnx.NodeProto, key: str, in_mask: np.ndarray | None, w: ConstWriter) -> None:
    if in_mask is None or in_mask.all() or key not in ("Conv", "Gemm", "MatMul"):
        return
    weight = w.get(node, 1).copy()
    if key == "Conv" or (key == "Gemm" and attr(node, "transB", 0)):  # (out, in, ...) layouts
        weight[:, ~in_mask] = 0
    else:
        weight[~in_mask] = 0
    w.set(node, 1, weight)


def _slice(node: onnx.NodeProto, key: str, i: np.ndarray | None, o: np.ndarray, w: ConstWriter) -> None:
    from onnx import helper

    n_inputs = len([x for x in node.input if x])
    if key == "Conv":
        w.set(node, 1, w.get(node, 1)[o][:, i])
    elif key == "Conv(depthwise)":
        w.set(node, 1, w.get(node, 1)[o])
        for a in node.attribute:
            if a.name == "group":
                a.CopyFrom(helper.make_attribute("group", int(o.sum())))
    elif key in ("Gemm", "MatMul"):
        weight = w.get(node, 1)
        w.set(node, 1, weight[o][:, i] if key == "Gemm" and attr(node, "transB", 0) else weight[i][:, o])
        if key == "Gemm" and n_inputs > 2 and w.get(node, 2).size == len(o):
            w.set(node, 2, w.get(node, 2)[..., o])
        return
    elif key == "BatchNormalization":
        for k in range(1, 5):
            w.set(node, k, w.get(node, k)[o])
    elif key.endswith("(constant)"):
        axis = _const_axis(node, w.info)
        if axis is not None:
            k = next(n for n, name in enumerate(node.input) if name in w.info.consts)
            w.set(node, k, np.compress(o, w.get(node, k), axis=axis))
    elif key == "Flatten" and node.op_type == "Reshape":
        old = w.info.features(node.input[0])
        assert old is not None, "a flattening Reshape has static input dims (_flattens)"
        shape = w.get(node, 1).copy()
        shape[shape == old] = int(o.sum())
        w.set(node, 1, shape)
    if key.startswith("Conv") and n_inputs > 2:
        w.set(node, 2, w.get(node, 2)[o])
