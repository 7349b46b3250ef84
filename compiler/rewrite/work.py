"""An editable copy of a Keras functional model: each layer's class, config and named weights.

The rewrite passes edit this copy in place (weights and a few config keys such as `use_bias`, or a
BatchNormalization turned into a no-op); they never re-wire the graph, so who feeds whom is read once
from the source model. `to_keras()` rebuilds a model with `clone_model` from the edited configs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from edgekiln.compiler.rewrite.bn import identity_bn, set_bn_affine
from edgekiln.compiler.rewrite.layer_state import LayerState

if TYPE_CHECKING:
    from edgekiln.compiler.keras_types import KerasModel

# What a Keras model's predict takes: the array itself for one input, else a list in model.inputs order.
PredictInputs: TypeAlias = np.ndarray | list[np.ndarray]

# Layers that compute y = x @ W + b along the channel axis (kernel axis -2 = input channels).
LINEAR = {"Conv1D", "Conv2D", "Conv3D", "Dense", "DepthwiseConv2D"}
# Layers that are y = x at inference (the converter drops them); the passes look through them.
IDENTITY = {"Identity", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout",
            "GaussianNoise", "AlphaDropout"}


class WorkingModel:
    """A mutable copy of a Keras functional (or Sequential) model's layers; the graph itself is fixed."""

    def __init__(self, model: KerasModel) -> None:
        self.model = model
        self.layers: dict[str, LayerState] = {}
        self.inputs_of: dict[str, list[str]] = {}
        self.consumers: dict[str, list[str]] = {}
        self.skipped: list[str] = []  # what a pass found but left, and why (explain lists them)
        nodes, self.shared = graph_nodes(model)
        for layer in model.layers:
            self.layers[layer.name] = LayerState(layer.name, type(layer).__name__, layer.get_config(),
                                                 {w.name: np.array(w.numpy()) for w in layer.weights},
                                                 _shape(nodes.get(layer.name)), type(layer).__name__ in IDENTITY)
        for name, node in ((n, node) for n, node in nodes.items() if n in self.layers):
            sources = [t._keras_history.operation.name for t in node.input_tensors]  # noqa: SLF001
            self.inputs_of[name] = [s for s in sources if s in self.layers]  # a Sequential's Input is no layer
            self.consumers.setdefault(name, [])
            for source in self.inputs_of[name]:
                self.consumers.setdefault(source, []).append(name)
        for state in self.layers.values():
            state.identity = state.identity or identity_bn(state)
        self.output_layers = {t._keras_history.operation.name for t in model.outputs}  # noqa: SLF001

    def sole_consumer(self, name: str) -> str | None:
        """The one layer that reads `name`'s output (looking through Identity layers), if its output goes
        nowhere else (and is not a model output)."""
        current = name
        while True:
            consumers = self.consumers.get(current, [])
            if len(consumers) != 1 or current in self.output_layers:
                return None
            if not self.layers[consumers[0]].identity:
                return consumers[0]
            current = consumers[0]

    def sole_input(self, name: str) -> str | None:
        """The one layer feeding `name` (looking through Identity layers), if it has exactly one input."""
        current = name
        while True:
            sources = self.inputs_of.get(current, [])
            if len(sources) != 1:
                return None
            if not self.layers[sources[0]].identity:
                return sources[0]
            current = sources[0]

    def to_identity(self, name: str) -> None:
        """Edits in place: a BatchNormalization becomes y = x (no scale, no shift: the converter drops it).

        It stays a BatchNormalization rather than becoming an Identity layer: Keras re-calls every layer
        with the original call's keyword arguments (`training`, `mask`), which Identity does not take.
        """
        set_bn_affine(self.layers[name], None, None)
        self.layers[name].identity = True

    def to_keras(self) -> KerasModel:
        """A new Keras model from the edited configs and weights."""
        import keras
        from keras.src.saving.serialization_lib import SafeModeScope

        # A Lambda layer's config holds its code; it is only here if the user let the source load with
        # --unsafe, so rebuilding it runs nothing they have not already agreed to run.
        with SafeModeScope(safe_mode=not any(s.kind == "Lambda" for s in self.layers.values())):
            rebuilt = keras.models.clone_model(
                self.model, clone_function=lambda layer: type(layer).from_config(self.layers[layer.name].config))
        for layer in rebuilt.layers:
            if layer.weights:  # Input layers (renamed by the clone when they had no name) have none
                weights = self.layers[layer.name].weights
                layer.set_weights([weights[w.name] for w in layer.weights])
        return rebuilt


def graph_nodes(model: KerasModel) -> tuple[dict[str, Any], bool]:
    """Each layer's call that is part of this model (walking back from its outputs), and whether a layer
    is called more than once within it.

    A layer's `_inbound_nodes` may also hold calls from outside the model: a Sequential loaded from a
    Keras 2 `.h5` is built twice (from its config's input shape, then again when loaded), so each of its
    layers has two nodes of which one belongs to the model; counting nodes called every layer shared.
    """
    nodes: dict[str, Any] = {}
    calls: dict[str, set[int]] = {}
    stack = list(model.outputs)
    while stack:
        history = stack.pop()._keras_history  # noqa: SLF001
        operation, index = history.operation, history.node_index
        if index in calls.setdefault(operation.name, set()):
            continue
        calls[operation.name].add(index)
        nodes[operation.name] = operation._inbound_nodes[index]  # noqa: SLF001
        stack.extend(nodes[operation.name].input_tensors)
    return nodes, any(len(indices) > 1 for indices in calls.values())


def _shape(node: Any) -> tuple[int | None, ...]:
    """The node's output shape without the batch axis (() when the layer is not called in the model)."""
    outputs = node.output_tensors if node is not None else []
    return tuple(outputs[0].shape[1:]) if len(outputs) == 1 else ()


def kernel_kind(state: LayerState) -> str | None:
    """'linear' for a channels-last conv / dense / depthwise conv with groups 1, else None."""
    if state.kind not in LINEAR or state.config.get("data_format", "channels_last") != "channels_last":
        return None
    return "linear" if state.config.get("groups", 1) == 1 else None


def out_view(state: LayerState) -> np.ndarray:
    """The kernel as [..., output channels] (a depthwise kernel [kh, kw, C, M] has C*M outputs, c-major)."""
    kernel = state.weights["kernel"]
    return kernel.reshape(*kernel.shape[:-2], -1) if state.kind == "DepthwiseConv2D" else kernel


def bias(state: LayerState) -> np.ndarray:
    return state.weights.get("bias", np.zeros(out_view(state).shape[-1], np.float32))


def set_kernel_and_bias(state: LayerState, out_kernel: np.ndarray, new_bias: np.ndarray) -> None:
    """Edits in place: the kernel from its [..., outputs] view, and a bias (switching use_bias on)."""
    state.weights["kernel"] = out_kernel.reshape(state.weights["kernel"].shape).astype(np.float32)
    state.weights["bias"] = np.asarray(new_bias, np.float32)
    state.config["use_bias"] = True


def scale_outputs(state: LayerState, s: np.ndarray, shift: np.ndarray | None = None) -> None:
    """Edits in place: y -> s * y + shift, per output channel (exact: the layer is affine before its activation)."""
    new_bias = bias(state) * s + (0 if shift is None else shift)
    set_kernel_and_bias(state, out_view(state) * s, new_bias)


def scale_inputs(state: LayerState, s: np.ndarray) -> None:
    """Edits in place: the layer now expects its input divided by s, i.e. W[..., i, :] *= s[i]."""
    kernel = state.weights["kernel"]
    state.weights["kernel"] = (kernel * s.reshape(-1, 1)).astype(np.float32)


def input_contribution(state: LayerState, kernel: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per output channel, what a constant input x (per input channel) adds through `kernel` (layer's layout)."""
    weighted = kernel * x.reshape(-1, 1)                  # [..., in, out-or-multiplier]
    if state.kind == "DepthwiseConv2D":                     # output (c, m) sees only input c
        return weighted.sum(axis=tuple(range(kernel.ndim - 2))).reshape(-1)
    return weighted.sum(axis=tuple(range(kernel.ndim - 1)))


def output_ranges(state: LayerState) -> np.ndarray:
    """max |W| per output channel."""
    view = out_view(state)
    return np.abs(view).reshape(-1, view.shape[-1]).max(axis=0)


def input_ranges(state: LayerState) -> np.ndarray:
    """max |W| per input channel (kernel axis -2)."""
    kernel = np.moveaxis(state.weights["kernel"], -2, 0)
    return np.abs(kernel).reshape(kernel.shape[0], -1).max(axis=1)


def positively_homogeneous(state: LayerState) -> bool:
    """f(s * x) = s * f(x) for every per-channel s > 0: ReLU without cap or threshold, leaky ReLU, PReLU."""
    config = state.config
    if state.kind == "ReLU":
        return config.get("max_value") is None and not config.get("threshold")
    if state.kind == "Activation":
        return config.get("activation") in ("relu", "linear", "leaky_relu")
    return state.kind in ("LeakyReLU", "PReLU", "Identity", "Dropout") or state.identity


def fused_activation(state: LayerState) -> str:
    """The activation a linear layer applies itself ('linear' when none)."""
    return str(state.config.get("activation") or "linear")


def shift_through(state: LayerState) -> bool:
    """g(x + t) = g(x) + t for a per-channel t: max pooling (pads with -inf), global pooling, y = x layers."""
    return state.identity or state.kind in ("MaxPooling1D", "MaxPooling2D", "GlobalAveragePooling1D",
                                            "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D")


def scale_through(state: LayerState) -> bool:
    """g(s * x) = s * g(x) for a per-channel s > 0 (a BatchNormalization is handled by its caller)."""
    return positively_homogeneous(state) or shift_through(state) or \
        state.kind in ("AveragePooling1D", "AveragePooling2D", "ZeroPadding1D", "ZeroPadding2D")
