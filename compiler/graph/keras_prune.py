"""Keras 3 side of structured pruning: the channel graph of a model, and physical channel removal.

Removal rebuilds the model with `clone_model` from layer configs whose filter/unit counts are
reduced, then sets sliced weights (FACTS.md: the Keras 3 way that works). Scans use `masked`
instead: zeroing a consumer's input weights for the removed channels gives exactly the outputs of
the removed model without rebuilding or retracing anything.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np

from edgekiln.compiler.errors import InputModelError, first_line
from edgekiln.compiler.keras_types import KerasLayer, KerasModel
from edgekiln.compiler.prune.channels import ChannelGraph, Node, Plan
from edgekiln.compiler.prune.groups import Analysis
from edgekiln.compiler.tf_env import import_keras

# Layers whose weights depend on channels: how to slice them given (input mask, output mask).
Slicer = Callable[[list[np.ndarray], np.ndarray, np.ndarray], list[np.ndarray]]
SLICERS: dict[str, Slicer] = {
    "Conv2D": lambda w, i, o: [w[0][:, :, i][..., o], *[b[o] for b in w[1:]]],
    "Dense": lambda w, i, o: [w[0][i][:, o], *[b[o] for b in w[1:]]],
    "DepthwiseConv2D": lambda w, i, o: [w[0][:, :, o], *[b[o] for b in w[1:]]],
    "BatchNormalization": lambda w, i, o: [v[o] for v in w],
}
SIZE_KEYS = {"Conv2D": "filters", "Dense": "units"}  # config key of a producer's output channels
_LAST_AXIS_LAYERS = {"Concatenate": "axis", "BatchNormalization": "axis"}


def graph_model(model: KerasModel) -> KerasModel:
    """The functional graph behind a model (a built Sequential keeps one in `_functional`)."""
    return getattr(model, "_functional", None) or model


def channel_graph(model: KerasModel) -> ChannelGraph:
    """The channel graph of a functional or Sequential Keras model."""
    graph = graph_model(model)
    nodes = [_node(layer, *_parents(graph, layer)) for layer in graph.operations]
    outputs = tuple(dict.fromkeys(t._keras_history.operation.name for t in graph.outputs))
    fixed = tuple((n.name, f"{n.op} {n.name} applies softmax across its channels") for n in nodes
                  if n.op in SIZE_KEYS and _activation(graph.get_layer(n.name)) == "softmax")
    return ChannelGraph(tuple(nodes), outputs, fixed=fixed)


def _parents(graph: KerasModel, layer: KerasLayer) -> tuple[list[str], bool]:
    """Names of the layers feeding `layer` in this graph, and whether it is called more than once."""
    from keras.src.ops.function import make_node_key  # how Keras itself keys a graph's nodes

    nodes = [n for k, n in enumerate(layer._inbound_nodes) if make_node_key(layer, k) in graph._nodes]  # noqa: SLF001
    names = [t._keras_history.operation.name for n in nodes for t in n.input_tensors]
    return list(dict.fromkeys(names)), len(nodes) > 1


def _node(layer: KerasLayer, parents: list[str], shared: bool) -> Node:
    if shared or isinstance(layer.output, list | tuple):  # one node per layer: no single output to describe
        kind = "shared" if shared else "multi-output"
        return Node(layer.name, f"{type(layer).__name__}({kind})", tuple(parents), channels=0, kernel=0)
    shape = tuple(layer.output.shape)
    op = _op_key(layer, len(shape))
    spatial = int(np.prod(shape[1:-1])) if len(shape) > 2 else 1
    common = {"name": layer.name, "op": op, "inputs": tuple(parents), "channels": int(shape[-1] or 0),
              "spatial": spatial}
    kind = type(layer).__name__
    weights = [np.asarray(w) for w in layer.get_weights()]
    if op in ("Conv2D", "Dense"):
        kernel = weights[0]
        return Node(**common, kernel=int(np.prod(kernel.shape[:-2])), bias=len(weights) > 1,
                    weight=np.moveaxis(kernel, -1, 0).reshape(kernel.shape[-1], -1))
    if op == "DepthwiseConv2D":
        taps = int(np.prod(weights[0].shape[:2]))
        return Node(**common, kernel=taps, per_channel_params=taps + (len(weights) > 1))
    if kind == "BatchNormalization" and op == kind:
        scale = weights[0] if layer.scale else None
        return Node(**common, kernel=0, per_channel_params=len(weights), scale=scale)
    if op == "Flatten":
        in_shape = tuple(layer.input.shape)
        return Node(**{**common, "spatial": int(np.prod(in_shape[1:-1]))}, kernel=0)
    return Node(**common, kernel=0)


def _op_key(layer: KerasLayer, rank: int) -> str:
    """The layer's class, refined where an attribute changes how it couples channels."""
    kind = type(layer).__name__
    if kind == "InputLayer":
        return "Input"
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return f"{kind}(channels_first)"
    if kind == "Conv2D" and getattr(layer, "groups", 1) != 1:
        return f"Conv2D(groups={layer.groups})"
    if kind == "DepthwiseConv2D" and layer.depth_multiplier != 1:
        return f"DepthwiseConv2D(multiplier={layer.depth_multiplier})"
    if kind in _LAST_AXIS_LAYERS and _axis(layer, _LAST_AXIS_LAYERS[kind]) % rank != rank - 1:
        return f"{kind}(axis={_axis(layer, _LAST_AXIS_LAYERS[kind])})"
    if kind == "Activation" and _activation(layer) == "softmax":
        return "Activation(softmax)"
    return kind


def _axis(layer: KerasLayer, key: str) -> int:
    axis = getattr(layer, key)
    return int(axis[0] if isinstance(axis, list | tuple) else axis)


def _activation(layer: KerasLayer) -> str:
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", str(activation))


def apply(model: KerasModel, analysis: Analysis, plan: Plan) -> KerasModel:
    """A new model with the plan's channels physically removed (the input model is not touched)."""
    keras = import_keras()
    sizes = {n.name: int(analysis.mask(n.name, plan).sum()) for n in analysis.graph.nodes if n.op in SIZE_KEYS}

    def rebuild(layer: KerasLayer) -> KerasLayer:
        config = layer.get_config()
        config.pop("build_config", None)
        if layer.name in sizes:
            config[SIZE_KEYS[type(layer).__name__]] = sizes[layer.name]
        return layer.__class__.from_config(config)

    try:
        pruned = keras.models.clone_model(model, clone_function=rebuild)
        for layer in graph_model(model).operations:
            if layer.get_weights():
                pruned.get_layer(layer.name).set_weights(_sliced(layer, analysis, plan))
    except Exception as exc:  # noqa: BLE001  (Keras raises many types; wrap them where they enter)
        raise InputModelError(f"cannot rebuild the model with fewer channels: {first_line(exc)}",
                              "build without --prune, or report the layer that fails") from exc
    return pruned


def _sliced(layer: KerasLayer, analysis: Analysis, plan: Plan) -> list[np.ndarray]:
    weights = [np.asarray(w) for w in layer.get_weights()]
    node = analysis.graph.node(layer.name)
    out_mask = analysis.mask(layer.name, plan)
    in_mask = analysis.mask(node.inputs[0], plan) if len(node.inputs) == 1 else None
    if out_mask.all() and (in_mask is None or in_mask.all()):
        return weights
    slicer = SLICERS.get(node.op)
    if slicer is None or in_mask is None:
        raise ValueError(f"bug: plan changes channels of {node.op} {layer.name}, which has no slicer")
    return slicer(weights, in_mask, out_mask)


@contextlib.contextmanager
def masked(model: KerasModel, analysis: Analysis, plan: Plan) -> Iterator[KerasModel]:
    """The model with the plan's channels zeroed at every consumer input; restored on exit."""
    saved = {}
    for node in analysis.graph.nodes:
        if node.op in SIZE_KEYS and len(node.inputs) == 1:
            drop = ~analysis.mask(node.inputs[0], plan)
            if drop.any():
                layer = model.get_layer(node.name)
                kernel = np.asarray(layer.kernel)
                saved[node.name] = kernel
                zeroed = kernel.copy()
                zeroed[..., drop, :] = 0.0
                layer.kernel.assign(zeroed)
    try:
        yield model
    finally:
        for name, kernel in saved.items():
            model.get_layer(name).kernel.assign(kernel)
