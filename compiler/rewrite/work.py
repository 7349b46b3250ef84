"""An editable copy of a Keras functional model: each layer's class, config and named weights.

The rewrite passes edit this copy in place (weights and a few config keys such as `use_bias`, or a
BatchNormalization turned into a no-op); they never re-wire the graph, so who feeds whom is read once
from the source model. `to_keras()` rebuilds a model with `clone_model` from the edited configs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Layers that compute y = x @ W + b along the channel axis (kernel axis -2 = input channels).
LINEAR = {"Conv1D", "Conv2D", "Conv3D", "Dense", "DepthwiseConv2D"}


@dataclass
class LayerState:
    """One layer of the working copy: its class name, its config and its weights by variable name."""

    name: str
    kind: str
    config: dict[str, Any]
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    rank: int = 0  # rank of the layer's output, batch included
    identity: bool = False  # rewritten into a no-op (the converter drops it)


class WorkingModel:
    """A mutable copy of a Keras functional (or Sequential) model's layers; the graph itself is fixed."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.layers: dict[str, LayerState] = {}
        self.inputs_of: dict[str, list[str]] = {}
        self.consumers: dict[str, list[str]] = {}
        for layer in model.layers:
            self.layers[layer.name] = LayerState(layer.name, type(layer).__name__, layer.get_config(),
                                                 {w.name: np.array(w.numpy()) for w in layer.weights},
                                                 _rank(layer), type(layer).__name__ == "Identity")
            nodes = layer._inbound_nodes  # noqa: SLF001  (Keras' only record of the functional graph)
            sources = [t._keras_history.operation.name for t in nodes[0].input_tensors] if nodes else []  # noqa: SLF001
            self.inputs_of[layer.name] = sources
            self.consumers.setdefault(layer.name, [])
            for source in sources:
                self.consumers.setdefault(source, []).append(layer.name)
        for state in self.layers.values():
            state.identity = state.identity or _identity_bn(state)
        self.shared = any(len(layer._inbound_nodes) > 1 for layer in model.layers)  # noqa: SLF001
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
        state = self.layers[name]
        set_bn_shift(state, np.zeros(state.weights["moving_mean"].shape, np.float32))
        state.config["center"] = False
        del state.weights["beta"]
        state.identity = True

    def to_keras(self) -> Any:
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


def _identity_bn(state: LayerState) -> bool:
    """A BatchNormalization an earlier rewrite turned into a no-op (no scale, no shift, mean 0, var 1 - eps)."""
    if state.kind != "BatchNormalization" or state.config.get("scale") or state.config.get("center"):
        return False
    w = state.weights
    return not np.any(w["moving_mean"]) and np.allclose(w["moving_variance"], 1.0 - state.config["epsilon"])


def _rank(layer: Any) -> int:
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError):  # a layer without a single symbolic output
        return 0


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


def input_shift_in_bias(state: LayerState, t: np.ndarray) -> bool:
    """Edits in place: absorb x -> x + t (per input channel) into the bias; False when that is not exact.

    W (x + t) = W x + sum_i W[..., i, o] t_i, except where zero padding meets a kernel wider than 1:
    the padded border would see 0 where the shifted input had t.
    """
    kernel = state.weights["kernel"]
    if state.kind != "Dense" and state.config.get("padding") == "same" and any(k > 1 for k in kernel.shape[:-2]):
        return False
    set_kernel_and_bias(state, out_view(state), bias(state) + input_contribution(state, kernel, t))
    return True


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


def bn_affine(state: LayerState) -> tuple[np.ndarray, np.ndarray]:
    """A BatchNormalization layer as y = s * x + t per channel (inference mode)."""
    w, eps = state.weights, state.config["epsilon"]
    inv_std = 1.0 / np.sqrt(w["moving_variance"].astype(np.float64) + eps)
    gamma = w.get("gamma", np.ones_like(inv_std))
    beta = w.get("beta", np.zeros_like(inv_std))
    s = gamma * inv_std
    return s, beta - w["moving_mean"] * s


def set_bn_shift(state: LayerState, t: np.ndarray) -> None:
    """Edits in place: the BatchNormalization becomes y = x + t (no scale: the converter emits one ADD)."""
    eps = state.config["epsilon"]
    state.config.update(scale=False, center=True)
    state.weights = {"beta": t.astype(np.float32), "moving_mean": np.zeros_like(t, np.float32),
                     "moving_variance": np.full_like(t, 1.0 - eps, np.float32)}


def channels_last_bn(state: LayerState) -> bool:
    """A BatchNormalization over the last axis (the only kind the passes rewrite)."""
    axis = state.config.get("axis", -1)
    axis = axis[0] if isinstance(axis, list | tuple) and len(axis) == 1 else axis
    return state.kind == "BatchNormalization" and not state.identity and axis in (-1, state.rank - 1)


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
    """g(x + t) = g(x) + t for a per-channel t: pooling, dropout, identity."""
    return state.kind in ("Identity", "Dropout", "MaxPooling1D", "MaxPooling2D", "GlobalAveragePooling1D",
                          "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D")


def scale_through(state: LayerState) -> bool:
    """g(s * x) = s * g(x) for a per-channel s > 0 (a BatchNormalization is handled by its caller)."""
    return positively_homogeneous(state) or shift_through(state) or \
        state.kind in ("AveragePooling1D", "AveragePooling2D", "ZeroPadding1D", "ZeroPadding2D")
