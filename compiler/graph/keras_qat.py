"""Quantization-aware fine-tuning in Keras 3 (no tfmot: it does not support Keras 3), exported as ordinary int8.

1. fold: every BatchNormalization that is the only reader of a Conv2D / DepthwiseConv2D / Dense without an
   activation is folded into it, the way the TFLite converter folds it (s = gamma / sqrt(var + eps):
   w' = w * s per output channel, b' = (b - mean) * s + beta), and left in place as an identity (gamma 1,
   beta 0, mean 0, variance 1 - eps: exactly x, frozen; the converter folds it away again). What trains is then
   what the converter will quantize, in the graph the user gave.
2. train: the folded model with a fake-quantizer on every tensor the int8 file will have (8 bits, asymmetric: the
   converter's int8 activations; none on an output the converter fuses away: a conv folded into its BN, an op
   whose only reader is a ReLU it fuses), its range first set from the calibration samples (min / max clipped at
   the 99.99th percentile of |x|, recipe.PERCENTILE: a few outlier channels must not take the other channels'
   steps) and then its step size learned (LSQ, Esser et al. 2020: ActivationQuantizer); and per-channel symmetric
   int8 weights (scale max|w| / 127 per output channel, the converter's weight
   quantization), by the straight-through estimator: each step runs on the quantized kernels and applies the
   gradient to the float ones. The loss is the distillation mix of graph/keras_distill.py towards the float
   model (T = QAT_TEMPERATURE), with the labels when given.
3. export: the folded model with the trained float kernels goes through the same TFLite int8 quantizer as every
   int8 candidate, so the shipped file is an ordinary int8 model; the converter's per-channel weight scales are
   the ones trained against, and its activation ranges are the learned ones (`ranges`, written into the calibrated
   model by search/qat_builder.py: each tensor's int8 scale is its quantizer's learned step): recalibrating by
   min / max would undo the clipping QAT trained for (measured on mnist_resnet_outliers.keras, docs/architecture.md).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekiln.compiler.graph import keras_distill, keras_recover
from edgekiln.compiler.graph.keras_prune import graph_model
from edgekiln.compiler.keras_types import KerasLayer, KerasModel
from edgekiln.compiler.recipe import PERCENTILE
from edgekiln.compiler.tf_env import import_keras, import_tf

if TYPE_CHECKING:
    from tensorflow import Tensor

EPOCHS = 3
BATCH = 32
LEARNING_RATE = 1e-4  # fine-tuning a trained model: small steps
QAT_TEMPERATURE = 2.0
# log step sizes: Adam from 0.2 (a step moves by up to ~20 % of itself per batch), cosine-decayed to 0 over the
# run; 0.03 and 0.1 gave the same accuracy on mnist_resnet_outliers.keras (98.7 / 98.5 %) but left the constructed
# model of tests/integration/test_qat_lsq.py short of its budget (its step must shrink 20x in 3 epochs)
STEP_LEARNING_RATE = 0.2
MIN_STEP = 1e-6  # the smallest step calibration starts from (x / step)
_FOLDS_INTO = ("Conv2D", "DepthwiseConv2D", "Dense")
_FUSED = ("linear", "relu", "relu6")  # activations the converter fuses into the producing op
_NOT_QUANTIZED = ("InputLayer", "Dropout", "Flatten", "Reshape",  # pass values through unchanged
                  "MaxPooling2D")  # its int8 output keeps its input's scale (the converter ties them)


def fold(model: KerasModel) -> tuple[KerasModel, list[str]]:
    """A copy of `model` with each foldable BatchNormalization folded into its producer; the folded BN names."""
    keras, graph = import_keras(), graph_model(model)
    pairs = _foldable(graph)

    def rebuild(layer: KerasLayer) -> KerasLayer:
        config = layer.get_config()
        config.pop("build_config", None)
        if layer.name in pairs:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    folded = keras.models.clone_model(model, clone_function=rebuild)
    for layer in graph.operations:
        weights = layer.get_weights()
        if layer.name in pairs:
            folded.get_layer(layer.name).set_weights(_folded(layer, graph.get_layer(pairs[layer.name])))
        elif layer.name in pairs.values():
            folded.get_layer(layer.name).set_weights(_identity(layer))
        elif weights:
            folded.get_layer(layer.name).set_weights(weights)
    return folded, list(pairs.values())


def _identity(bn: KerasLayer) -> list[np.ndarray]:
    """A BatchNormalization's weights that make it pass x through: (x - 0) / sqrt(1 - eps + eps) * 1 + 0."""
    values = {"gamma": 1.0, "beta": 0.0, "moving_mean": 0.0, "moving_variance": 1.0 - bn.epsilon}
    return [np.full(w.shape, values[w.path.split("/")[-1]], np.float32) for w in bn.weights]


def _readers(graph: KerasModel) -> dict[str, list[KerasLayer]]:
    """layer name -> the layers that read its output."""
    readers: dict[str, list[KerasLayer]] = {}
    for layer in graph.operations:
        for node in layer._inbound_nodes:  # noqa: SLF001  (Keras keeps no public list of a layer's parents)
            for tensor in node.input_tensors:
                readers.setdefault(tensor._keras_history.operation.name, []).append(layer)  # noqa: SLF001
    return readers


def _foldable(graph: KerasModel) -> dict[str, str]:
    """producer name -> the BatchNormalization it alone feeds (channels last, producer without activation)."""
    readers = _readers(graph)
    pairs = {}
    for layer in graph.operations:
        after = readers.get(layer.name, [])
        if (type(layer).__name__ in _FOLDS_INTO and len(after) == 1 and type(after[0]).__name__ ==
                "BatchNormalization" and getattr(layer.activation, "__name__", "") == "linear"
                and after[0].axis in (-1, len(after[0].input.shape) - 1)):
            pairs[layer.name] = after[0].name
    return pairs


def _folded(producer: KerasLayer, bn: KerasLayer) -> list[np.ndarray]:
    weights = [np.asarray(w, np.float64) for w in producer.get_weights()]
    stats = dict(zip([v.path.split("/")[-1] for v in bn.weights], [np.asarray(w, np.float64) for w in
                                                                    bn.get_weights()], strict=True))
    channels = stats["moving_mean"].shape[0]
    scale = stats.get("gamma", np.ones(channels)) / np.sqrt(stats["moving_variance"] + bn.epsilon)
    kernel = weights[0]
    shape = kernel.shape
    kernel = (kernel.reshape(*shape[:2], -1) if type(producer).__name__ == "DepthwiseConv2D" else kernel) * scale
    bias = weights[1] if len(weights) > 1 else np.zeros(channels)
    bias = (bias - stats["moving_mean"]) * scale + stats.get("beta", np.zeros(channels))
    return [kernel.reshape(shape).astype(np.float32), bias.astype(np.float32)]


def quantize_kernel(kernel: Tensor, depthwise: bool) -> Tensor:
    """Per-channel symmetric int8 (the converter's): scale max|w| / 127 per output channel, values in [-127, 127]."""
    tf = import_tf()
    flat = tf.reshape(kernel, [-1, tf.reduce_prod(tf.shape(kernel)[2:])]) if depthwise else \
        tf.reshape(kernel, [-1, tf.shape(kernel)[-1]])
    scale = tf.maximum(tf.reduce_max(tf.abs(flat), axis=0), 1e-12) / 127.0
    return tf.reshape(tf.clip_by_value(tf.round(flat / scale), -127.0, 127.0) * scale, tf.shape(kernel))


@functools.cache
def _fake_quant_class() -> type:
    """The activation fake-quantizer layer (made once Keras is imported)."""
    keras, tf = import_keras(), import_tf()

    class ActivationQuantizer(keras.layers.Layer):  # type: ignore[name-defined]
        """8-bit fake quantization of its input with a learned step size (LSQ, Esser et al. 2020).

        x^ = clip(round(x / s), -zero, 255 - zero) * s: `zero` is the integer zero point (0..255, fixed from the
        calibrated range, so 0 stays exact and the converter takes the range as it is) and the step s is learned.
        Gradients (straight through the rounding): x passes inside the range and stops outside it; s gets LSQ's
        round(x/s) - x/s inside and -zero or 255 - zero at the clipped ends, times LSQ's gradient scale
        1/sqrt(N * Qp) (N the values per sample, Qp = 255 - zero). s is held as log s and has its own Adam
        (train): one model's steps span orders of magnitude (0.02 to 1.8 on mnist_resnet_outliers.keras), so a
        step moves by a share of itself. Adam's update does not depend on a constant gradient scale, so there
        the 1/sqrt(N * Qp) matters only against Adam's epsilon; it is kept so the gradient is LSQ's.
        """

        def build(self, shape: Any) -> None:
            self.log_step = self.add_weight(shape=(), initializer="zeros", trainable=True, name="log_step")
            self.zero = self.add_weight(shape=(), initializer="zeros", trainable=False, name="zero")
            self.features = float(np.prod([d for d in shape[1:] if d is not None]) or 1.0)

        def call(self, x: Tensor) -> Tensor:
            positive = tf.maximum(255.0 - self.zero, 1.0)
            scale = 1.0 / tf.sqrt(self.features * positive)
            step = tf.exp(self.log_step)
            step = step * scale + tf.stop_gradient(step - step * scale)  # value s, gradient scaled
            levels = tf.clip_by_value(x / step, -self.zero, positive)
            levels = levels + tf.stop_gradient(tf.round(levels) - levels)  # round, straight through
            return levels * step

    return ActivationQuantizer


def fake_quantized(folded: KerasModel, calib: np.ndarray) -> KerasModel:
    """The folded model (sharing its layers and weights) with a fake-quantizer after every layer's output, each
    range set from that output on `calib` (clipped_range)."""
    keras = import_keras()
    quantizer = _fake_quant_class()
    graph = graph_model(folded)
    fused_away = _fused_away(graph)
    watched = [layer for layer in graph.operations if type(layer).__name__ not in _NOT_QUANTIZED
               and not isinstance(layer.output, list | tuple) and layer.name not in fused_away
               and getattr(getattr(layer, "activation", None), "__name__", "linear") in _FUSED]
    probe = keras.Model(graph.inputs, [layer.output for layer in watched])
    outputs = probe.predict(calib, batch_size=256, verbose=0)
    ranges = {layer.name: clipped_range(o)
              for layer, o in zip(watched, outputs if isinstance(outputs, list) else [outputs], strict=True)}
    made: dict[str, KerasLayer] = {}

    def call(layer: KerasLayer, *args: Any, **kwargs: Any) -> Any:
        out = layer(*args, **kwargs)
        if layer.name not in ranges:
            return out
        made[layer.name] = quantizer(name=f"{layer.name}_fq")
        return made[layer.name](out)

    model = keras.models.clone_model(graph, clone_function=lambda layer: layer, call_function=call)
    for name, (low, high) in ranges.items():
        made[name].set_weights(list(step_and_zero(low, high)))
    return model


def step_and_zero(low: float, high: float) -> tuple[np.float32, np.float32]:
    """The (step, integer zero point) of 8-bit asymmetric levels over [low, high] (0 inside): the range
    [-zero * step, (255 - zero) * step] holds 0 exactly, so the converter takes it as it is (no nudging)."""
    step = max((high - low) / 255.0, MIN_STEP)
    zero = float(np.clip(np.round(-low / step), 0.0, 255.0))
    return np.float32(np.log(step)), np.float32(zero)


def learned_range(log_step: float, zero: float) -> tuple[float, float]:
    """The (low, high) a quantizer's step and zero point stand for: what the export gives the converter."""
    step = float(np.exp(np.float32(log_step)))
    return 0.0 - zero * step, (255.0 - zero) * step


def _fused_away(graph: KerasModel) -> set[str]:
    """Layers whose output the converter never makes a tensor of, so no quantizer may train on it: a producer folded
    into the BatchNormalization after it, and an op (conv, dense, add, BN) whose only reader is a ReLU / ReLU6 it
    fuses as its activation. A quantizer there would clip and round in training what the int8 file does not."""
    readers, pairs = _readers(graph), _foldable(graph)
    gone = set(pairs)
    for layer in graph.operations:
        after = readers.get(layer.name, [])
        if (len(after) == 1 and type(layer).__name__ in (*_FOLDS_INTO, "Add", "BatchNormalization")
                and getattr(getattr(layer, "activation", None), "__name__", "linear") == "linear"
                and _is_relu(after[0])):
            gone.add(layer.name)
    return gone


def _is_relu(layer: KerasLayer) -> bool:
    """A ReLU or ReLU6 layer the converter fuses into the op before it."""
    if type(layer).__name__ == "ReLU":
        return not layer.negative_slope and not layer.threshold and layer.max_value in (None, 6.0)
    return type(layer).__name__ == "Activation" and getattr(layer.activation, "__name__", "") in ("relu", "relu6")


def clipped_range(values: np.ndarray) -> tuple[float, float]:
    """(min, max) of `values` with 0 inside, each bound clipped at the PERCENTILE of |values|."""
    top = float(np.percentile(np.abs(values), PERCENTILE))
    return max(min(float(np.min(values)), 0.0), -top), min(max(float(np.max(values)), 0.0), top)


def ranges(qat: KerasModel) -> dict[str, tuple[float, float]]:
    """layer name -> the trained (low, high) of the fake-quantizer after it: the ranges the export keeps. A layer
    with an activation the converter does not fuse into its op (softmax, sigmoid, ...) is left out: its converted
    op's output is the pre-activation tensor, whose range is not the quantizer's."""
    found = {}
    for layer in qat.layers:
        producer = qat.get_layer(layer.name.removesuffix("_fq")) if layer.name.endswith("_fq") else None
        if producer is not None and getattr(getattr(producer, "activation", None), "__name__", "linear") in _FUSED:
            log_step, zero = (float(w) for w in layer.get_weights())
            found[layer.name.removesuffix("_fq")] = learned_range(log_step, zero)
    return found


def train(qat: KerasModel, teacher: KerasModel, x: np.ndarray, y: np.ndarray | None, epochs: int = EPOCHS,
          seed: int = 0) -> dict[str, object]:
    """Fine-tune `qat` in place towards `teacher` (the float model) with quantized kernels (straight-through)."""
    tf, keras = import_tf(), import_keras()
    rng = np.random.default_rng(seed)
    for layer in qat.layers:
        if type(layer).__name__ == "BatchNormalization":
            layer.trainable = False  # folded ones are identities; the others keep their trained statistics
    kernels = [(layer.kernel, type(layer).__name__ == "DepthwiseConv2D") for layer in qat.layers
               if type(layer).__name__ in _FOLDS_INTO]
    probabilities = keras_recover.looks_like_probabilities(teacher.predict(x[:64], verbose=0))
    objective = keras_distill.loss(QAT_TEMPERATURE, probabilities, y is not None)
    variables = qat.trainable_variables
    steps = [v for v in variables if v.path.endswith("/log_step")]
    weights = [v for v in variables if not v.path.endswith("/log_step")]
    optimizer = keras.optimizers.Adam(LEARNING_RATE)
    optimizer.build(weights)
    batches = max(1, len(x) // BATCH)
    step_optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
        STEP_LEARNING_RATE, decay_steps=epochs * batches))
    step_optimizer.build(steps)

    @tf.function
    def step(xb: Tensor, yb: Tensor) -> Tensor:
        floats = [tf.identity(k) for k, _ in kernels]
        for (k, depthwise), value in zip(kernels, floats, strict=True):
            k.assign(quantize_kernel(value, depthwise))
        taught = teacher(xb, training=False)
        with tf.GradientTape() as tape:
            value = objective(yb, taught, qat(xb, training=True))
        grads = tape.gradient(value, weights + steps)
        for (k, _), kept in zip(kernels, floats, strict=True):
            k.assign(kept)  # the gradient at the quantized kernel goes to the float one
        optimizer.apply_gradients(zip(grads[:len(weights)], weights, strict=True))
        step_optimizer.apply_gradients(zip(grads[len(weights):], steps, strict=True))
        return value

    losses = []
    for _ in range(epochs):
        order, inputs = rng.permutation(len(x)), keras_recover.shift(x, rng)
        total = 0.0
        for b in range(batches):
            idx = order[b * BATCH:(b + 1) * BATCH]
            total += float(step(tf.constant(inputs[idx]), tf.constant(0.0 if y is None else y[idx])))
        losses.append(round(total / batches, 5))
    return {"epochs": epochs, "batch": BATCH, "learning_rate": LEARNING_RATE, "samples": len(x),
            "step_learning_rate": f"{STEP_LEARNING_RATE:g}, cosine to 0 (log step sizes, LSQ)",
            "loss": f"distillation to the float model at T={QAT_TEMPERATURE:g}" + (" + labels" if y is not None
                                                                                  else ""),
            "epoch_losses": losses}
